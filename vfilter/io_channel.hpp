// What the stages of one connection share on the asynchronous path: its io_uring (stages submit
// host I/O to it; one completion thread reaps it and calls each I/O's owner back), its tagged
// worker threads (for blocking stages), the context records of its host I/O, and a pool of child
// StageIos. Internal to vfilter/.
#pragma once

#include <liburing.h>
#include <sys/types.h>

#include <boost/intrusive/list.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "pfilter/slot_table.hpp"
#include "vfilter/record_sink.hpp"
#include "vfilter/stage_io.hpp"
#include "vfilter/tagged_workers.hpp"
#include "vfilter/tsan_handoff.hpp"

namespace v2p::vfilter {

class IoChannel {
 public:
  struct Options {
    RecordSink* sink = nullptr;
    // The server's current slot table (null inside: none yet; the agent may send one later).
    const std::atomic<pfilter::SlotTable*>* slot_table = nullptr;
    const std::vector<pid_t>* opaque_pids = nullptr;  // the export's untagged backend processes
    unsigned worker_threads = 4;                      // for blocking stages, started on first use
    unsigned ring_entries = 256;
    unsigned pool = 64;  // child StageIos made up front
  };
  // Throws v2p::Error when the ring cannot be set up.
  explicit IoChannel(const Options& options);
  // Waits for every host I/O submitted through the channel, then stops the completion thread.
  ~IoChannel();
  IoChannel(const IoChannel&) = delete;
  IoChannel& operator=(const IoChannel&) = delete;

  // Takes an SQE, lets `prepare` fill it (the user data must be a StageIo whose on_cqe is set)
  // and submits it: 0 or -errno. A template: the ring path calls it per host I/O and must not
  // allocate. Any thread.
  template <class Prepare>
  int submit_sqe(StageIo& io, Prepare&& prepare) {
    std::lock_guard lock(sq_mu_);
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) return -EBUSY;  // the connection bounds what is in flight below this
    prepare(sqe);
    io_uring_sqe_set_data(sqe, &io);
    outstanding_.fetch_add(1, std::memory_order_relaxed);
    handoff_release(&io);
    int rc = 0;
    do {
      rc = io_uring_submit(&ring_);
    } while (rc == -EINTR || rc == -EAGAIN || rc == -EBUSY);
    if (rc < 0) outstanding_.fetch_sub(1, std::memory_order_relaxed);
    return rc < 0 ? rc : 0;
  }

  // Runs `job` on a worker under `ioprio` (0 = untagged); its result comes back through the ring
  // to io.on_cqe, so the completion thread stays the only place I/O ends.
  void run_on_worker(StageIo& io, std::uint16_t ioprio, TaggedWorkers::Job job);

  // The context record of the host I/O `io` describes (cur_off, cur_len, host_op), ended with
  // `res`. Any thread.
  void publish(const StageIo& io, int res) noexcept;
  [[nodiscard]] pfilter::SlotTable* slot_table() const noexcept {
    return options_.slot_table ? options_.slot_table->load(std::memory_order_acquire) : nullptr;
  }

  // A child StageIo for I/O a stage issues below; given back by its Relay. Any thread.
  StageIo& acquire();
  void release(StageIo& io) noexcept;

 private:
  void complete_loop() noexcept;
  TaggedWorkers& workers();

  Options options_;
  io_uring ring_{};
  std::mutex sq_mu_;
  std::atomic<std::uint64_t> outstanding_{0};  // SQEs and worker jobs whose end is not reaped
  std::atomic<bool> stopping_{false};
  std::thread completer_;

  std::mutex workers_mu_;
  std::unique_ptr<TaggedWorkers> workers_;

  std::mutex pool_mu_;
  std::vector<std::unique_ptr<StageIo>> owned_;
  boost::intrusive::list<StageIo> free_;
};

}  // namespace v2p::vfilter
