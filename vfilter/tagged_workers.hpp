// Worker threads that run host I/O under the request's tag as their own I/O priority.
//
// Two things need this instead of an SQE's ioprio: file systems that turn O_DIRECT writes into
// buffered writes flushed by the submitting thread (btrfs with data checksums: the bios take the
// *thread's* priority, not the kiocb's), and block backends that do synchronous I/O of their own
// (a cache in front of the image, a tier remap). A worker sets its priority to the request's tag
// (ioprio_set on its own thread id) before the job and clears it after, and runs one job at a
// time, so every bio the job causes on this thread carries exactly that tag.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace v2p::vfilter {

class TaggedWorkers {
 public:
  // The job's result (bytes or 0 on success, -errno on failure) goes to `Done`, on the worker.
  using Job = std::function<int()>;
  using Done = std::function<void(int result)>;

  explicit TaggedWorkers(unsigned threads);
  // Runs the queued jobs to completion, then joins the workers.
  ~TaggedWorkers();
  TaggedWorkers(const TaggedWorkers&) = delete;
  TaggedWorkers& operator=(const TaggedWorkers&) = delete;

  // `ioprio` 0 runs the job with no priority set (untagged).
  void run(std::uint16_t ioprio, Job job, Done done);

 private:
  struct Entry {
    std::uint16_t ioprio;
    Job job;
    Done done;
  };
  void work() noexcept;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Entry> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

// Sets the calling thread's I/O priority (0 clears it). Returns 0 or -errno.
int set_thread_ioprio(std::uint16_t ioprio) noexcept;

// pwrite / pread until everything is transferred or an error: returns bytes or -errno.
int pwrite_all(int fd, const std::byte* data, std::uint32_t length, std::uint64_t offset) noexcept;
int pread_all(int fd, std::byte* data, std::uint32_t length, std::uint64_t offset) noexcept;

}  // namespace v2p::vfilter
