#include "vfilter/io_channel.hpp"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "common/clock.hpp"
#include "common/error.hpp"
#include "v2p/tag.hpp"
#include "vfilter/record_seq.hpp"

namespace v2p::vfilter {
std::uint16_t StageIo::ioprio() const noexcept {
  return tagging ? v2p::tag::ioprio_for_slot(slot) : 0;
}

void StageIo::Relay::done(int result) noexcept {
  v2p::Completion* up = upper;
  self->channel->release(*self);
  up->done(result);
}

IoChannel::IoChannel(const Options& options) : options_(options) {
  if (const int rc = io_uring_queue_init(options_.ring_entries, &ring_, 0); rc < 0) {
    throw Error(std::string("io_uring_queue_init failed: ") + std::strerror(-rc));
  }
  for (unsigned i = 0; i < options_.pool; ++i) {
    owned_.push_back(std::make_unique<StageIo>());
    free_.push_back(*owned_.back());
  }
  completer_ = std::thread([this] { complete_loop(); });
}

IoChannel::~IoChannel() {
  stopping_.store(true);
  // A no-op completion without user data wakes the completer so it sees stopping_.
  {
    std::lock_guard lock(sq_mu_);
    if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_)) {
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data(sqe, nullptr);
      io_uring_submit(&ring_);
    }
  }
  completer_.join();
  workers_.reset();
  io_uring_queue_exit(&ring_);
  free_.clear();
}

TaggedWorkers& IoChannel::workers() {
  std::lock_guard lock(workers_mu_);
  if (!workers_) workers_ = std::make_unique<TaggedWorkers>(options_.worker_threads);
  return *workers_;
}

void IoChannel::run_on_worker(StageIo& io, std::uint16_t ioprio, TaggedWorkers::Job job) {
  TaggedWorkers& pool = workers();
  outstanding_.fetch_add(1, std::memory_order_relaxed);
  io.submit_ns = monotonic_ns();
  handoff_release(&io);
  pool.run(ioprio, std::move(job), [this, &io](int result) {
    io.thread_result = result;
    io.thread_done = true;
    std::lock_guard lock(sq_mu_);
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) std::abort();  // the completer could never learn of this request
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data(sqe, &io);
    handoff_release(&io);
    int rc = 0;
    do {
      rc = io_uring_submit(&ring_);
    } while (rc == -EINTR || rc == -EAGAIN || rc == -EBUSY);
    if (rc < 0) std::abort();
  });
}

void IoChannel::publish(const StageIo& io, int res) noexcept {
  if (options_.sink == nullptr) return;
  ContextRecord r;
  r.submit_ns = io.submit_ns;
  r.complete_ns = monotonic_ns();
  r.voffset = io.cur_off;
  r.length = io.cur_len;
  // On an opaque backend the host I/O is the upstream process's and carries no tag: the record
  // names that process (0 when several serve the vdisk) and slot 0, for the window join.
  static const std::vector<pid_t> kNone;
  const auto& opaque = options_.opaque_pids != nullptr ? *options_.opaque_pids : kNone;
  r.tgid = opaque.empty()       ? static_cast<std::uint32_t>(::getpid())
           : opaque.size() == 1 ? static_cast<std::uint32_t>(opaque.front())
                                : 0;
  r.vm_id = io.who.vm_id;
  r.vdisk_id = io.who.vdisk_id;
  r.result = res < 0 ? res : 0;
  r.slot = io.host_tagged && opaque.empty() ? io.slot : 0;
  r.op = io.host_op;
  if (io.fua == Fua::kYes) r.flags |= kContextFua;
  if (io.op == StageOp::kZero && io.may_punch == MayPunch::kNo) r.flags |= kContextNoHole;
  r.seq = next_record_seq();
  options_.sink->publish(r);
}

StageIo& IoChannel::acquire() {
  {
    std::lock_guard lock(pool_mu_);
    if (!free_.empty()) {
      StageIo& io = free_.front();
      free_.pop_front();
      return io;
    }
    // More children in flight than ever before: grow once, keep it.
    owned_.push_back(std::make_unique<StageIo>());
    return *owned_.back();
  }
}

void IoChannel::release(StageIo& io) noexcept {
  std::lock_guard lock(pool_mu_);
  free_.push_front(io);
}

void IoChannel::complete_loop() noexcept {
  for (;;) {
    io_uring_cqe* cqe = nullptr;
    if (io_uring_wait_cqe(&ring_, &cqe) == 0) {
      auto* io = static_cast<StageIo*>(io_uring_cqe_get_data(cqe));
      int res = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      if (io != nullptr) {
        handoff_acquire(io);
        if (io->thread_done) {
          res = io->thread_result;
          io->thread_done = false;
        }
        io->on_cqe(io->owner, *io, res);
        outstanding_.fetch_sub(1, std::memory_order_relaxed);
      }
    }
    if (stopping_.load() && outstanding_.load() == 0) return;
  }
}

}  // namespace v2p::vfilter
