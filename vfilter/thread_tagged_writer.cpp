#include "vfilter/thread_tagged_writer.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace v2p::vfilter {
namespace {

constexpr int kIoprioWhoProcess = 1;  // with who == 0: the calling thread

int set_thread_ioprio(std::uint16_t ioprio) noexcept {
  return static_cast<int>(::syscall(SYS_ioprio_set, kIoprioWhoProcess, 0, ioprio));
}

// pwrite until everything is written or an error; the thread's priority tags every bio.
int write_all(int fd, const std::byte* data, std::uint32_t length, std::uint64_t offset) noexcept {
  std::uint32_t done = 0;
  while (done < length) {
    const ssize_t n = ::pwrite(fd, data + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return done > 0 ? static_cast<int>(done) : -errno;
    }
    if (n == 0) break;
    done += static_cast<std::uint32_t>(n);
  }
  return static_cast<int>(done);
}

}  // namespace

ThreadTaggedWriter::ThreadTaggedWriter(unsigned threads) {
  for (unsigned i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
}

ThreadTaggedWriter::~ThreadTaggedWriter() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadTaggedWriter::write(int fd, const std::byte* data, std::uint32_t length,
                               std::uint64_t offset, std::uint16_t ioprio, Done done) {
  {
    std::lock_guard lock(mu_);
    jobs_.push_back({fd, data, length, offset, ioprio, std::move(done)});
  }
  cv_.notify_one();
}

void ThreadTaggedWriter::work() noexcept {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    int result = set_thread_ioprio(job.ioprio) == 0 ? 0 : -errno;
    if (result == 0) result = write_all(job.fd, job.data, job.length, job.offset);
    // Back to "no priority set", so nothing else this thread does is attributed to the request.
    set_thread_ioprio(0);
    job.done(result);
  }
}

}  // namespace v2p::vfilter
