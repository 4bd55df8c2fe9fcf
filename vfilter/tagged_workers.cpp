#include "vfilter/tagged_workers.hpp"

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace v2p::vfilter {
namespace {
constexpr int kIoprioWhoProcess = 1;  // with who == 0: the calling thread
}  // namespace

int set_thread_ioprio(std::uint16_t ioprio) noexcept {
  return ::syscall(SYS_ioprio_set, kIoprioWhoProcess, 0, ioprio) == 0 ? 0 : -errno;
}

int pwrite_all(int fd, const std::byte* data, std::uint32_t length, std::uint64_t offset) noexcept {
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

int pread_all(int fd, std::byte* data, std::uint32_t length, std::uint64_t offset) noexcept {
  std::uint32_t done = 0;
  while (done < length) {
    const ssize_t n = ::pread(fd, data + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return done > 0 ? static_cast<int>(done) : -errno;
    }
    if (n == 0) break;  // end of file: the caller decides whether a short read is an error
    done += static_cast<std::uint32_t>(n);
  }
  return static_cast<int>(done);
}

TaggedWorkers::TaggedWorkers(unsigned threads) {
  for (unsigned i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
}

TaggedWorkers::~TaggedWorkers() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void TaggedWorkers::run(std::uint16_t ioprio, Job job, Done done) {
  {
    std::lock_guard lock(mu_);
    jobs_.push_back({ioprio, std::move(job), std::move(done)});
  }
  cv_.notify_one();
}

void TaggedWorkers::work() noexcept {
  // Named so a test (and `top -H`) can tell a handoff to a worker from work on the ring's threads.
  ::pthread_setname_np(::pthread_self(), "v2p-tagged");
  for (;;) {
    Entry e;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      e = std::move(jobs_.front());
      jobs_.pop_front();
    }
    int result = e.ioprio != 0 ? set_thread_ioprio(e.ioprio) : 0;
    if (result == 0) {
      try {
        result = e.job();
      } catch (...) {
        result = -EIO;  // a backend must not take the connection down with it
      }
    }
    // Back to "no priority set", so nothing else this thread does is attributed to the request.
    if (e.ioprio != 0) set_thread_ioprio(0);
    e.done(result);
  }
}

}  // namespace v2p::vfilter
