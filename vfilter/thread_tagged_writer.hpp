// Writes that must carry their tag through the submitting thread instead of the SQE.
//
// When a file system turns O_DIRECT writes into buffered writes flushed by the submitting
// thread (btrfs with data checksums), the bios it submits take the *thread's* I/O priority, not
// the kiocb's. A worker that sets its own priority to the request's tag (ioprio_set on its own
// thread id) before the write gets every bio of that write tagged, including its copy-on-write
// relocation. Each worker handles one write at a time, so the tag is exact.
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

class ThreadTaggedWriter {
 public:
  // Called on the worker thread with the bytes written or -errno.
  using Done = std::function<void(int result)>;

  explicit ThreadTaggedWriter(unsigned threads);
  // Runs the queued writes to completion, then joins the workers.
  ~ThreadTaggedWriter();
  ThreadTaggedWriter(const ThreadTaggedWriter&) = delete;
  ThreadTaggedWriter& operator=(const ThreadTaggedWriter&) = delete;

  void write(int fd, const std::byte* data, std::uint32_t length, std::uint64_t offset,
             std::uint16_t ioprio, Done done);

 private:
  struct Job {
    int fd;
    const std::byte* data;
    std::uint32_t length;
    std::uint64_t offset;
    std::uint16_t ioprio;
    Done done;
  };
  void work() noexcept;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace v2p::vfilter
