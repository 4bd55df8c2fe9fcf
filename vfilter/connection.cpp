#include "vfilter/connection.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "common/clock.hpp"
#include "v2p/tag.hpp"
#include "vfilter/nbd_wire.hpp"
#include "vfilter/request.hpp"
#include "vfilter/slot_allocator.hpp"
#include "vfilter/tsan_handoff.hpp"

namespace v2p::vfilter {

namespace {

constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::uint32_t kZeroChunk = 1U << 20;
constexpr std::size_t kBufferAlign = 4096;
constexpr unsigned kRingEntries = 2 * Connection::kMaxInflight;

struct FreeDeleter {
  void operator()(std::byte* p) const noexcept { std::free(p); }
};
using AlignedBuffer = std::unique_ptr<std::byte, FreeDeleter>;

AlignedBuffer aligned_buffer(std::size_t len, std::size_t align) noexcept {
  void* p = nullptr;
  const std::size_t rounded = (std::max<std::size_t>(len, 1) + align - 1) / align * align;
  if (::posix_memalign(&p, align, rounded) != 0) return nullptr;
  return AlignedBuffer(static_cast<std::byte*>(p));
}

// Source of zeros for WRITE_ZEROES where the file system cannot fallocate; shared, never written.
const std::byte* zero_chunk() {
  static const AlignedBuffer zeros = [] {
    auto b = aligned_buffer(kZeroChunk, kBufferAlign);
    if (b) std::memset(b.get(), 0, kZeroChunk);
    return b;
  }();
  return zeros.get();
}

// Per-process sequence number of records, so a consumer can detect loss.
std::atomic<std::uint64_t> g_record_seq{0};

}  // namespace

// One NBD request and the host I/Os it turns into; each stage is one host I/O at a time, so a
// request needs one slot for its whole life.
struct Pending {
  enum class Stage { kData, kZeroFill, kFallocate, kSync };
  RequestHeader req;
  Action action{};
  Stage stage = Stage::kData;
  AlignedBuffer buf;
  std::uint64_t room = 0;         // bytes counted against the connection's in-flight budget
  std::uint64_t received_ns = 0;  // request header read (0: not timed)
  SlotLease slot;
  std::uint64_t done = 0;  // bytes of the data / zero-fill stage completed
  // The host I/O currently in flight.
  IoOp op = IoOp::kOther;
  std::uint64_t cur_off = 0;
  std::uint32_t cur_len = 0;
  std::uint64_t submit_ns = 0;
  bool tagged = false;  // the SQE carried the slot in its ioprio hint bits
  // Set when a tagged worker did the host I/O: the NOP's CQE carries no result, this does.
  bool thread_done = false;
  bool via_backend = false;  // the whole request ran on a BlockBackend
  int thread_result = 0;
};

Connection::Connection(ServerContext& ctx, int fd, std::string peer_vm)
    : ctx_(ctx), fd_(fd), peer_vm_(std::move(peer_vm)) {}

Connection::~Connection() {
  shutdown();
  if (reader_.joinable()) reader_.join();
}

void Connection::start() {
  reader_ = std::thread([this] { run(); });
}

void Connection::shutdown() noexcept {
  // The descriptor stays open until the reader is done with it, so it cannot be reused under us.
  std::lock_guard lock(fd_mu_);
  if (!finished_.load()) ::shutdown(fd_, SHUT_RDWR);
}

void Connection::run() noexcept {
  try {
    if (negotiate()) serve();
  } catch (const std::exception& e) {
    fmt::print(stderr, "v2p vfilter: connection error: {}\n", e.what());
  }
  std::lock_guard lock(fd_mu_);
  ::close(fd_);
  finished_.store(true);
}

bool Connection::negotiate() {
  std::vector<ExportInfo> infos;
  for (const auto& e : ctx_.exports) infos.push_back(e.info);
  Handshake hs(std::move(infos));
  const auto send_all = [this](const std::vector<std::byte>& out) {
    std::size_t sent = 0;
    while (sent < out.size()) {
      const ssize_t n = ::send(fd_, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      sent += static_cast<std::size_t>(n);
    }
    return true;
  };
  std::vector<std::byte> tmp(4096);
  while (!hs.done() && !hs.closed()) {
    if (!send_all(hs.take_output())) return false;
    const ssize_t n = ::recv(fd_, tmp.data(), tmp.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // client went away mid-handshake: nothing to clean up
    hs.feed(std::span<const std::byte>(tmp.data(), static_cast<std::size_t>(n)));
  }
  if (!send_all(hs.take_output())) return false;
  if (hs.closed()) {
    if (hs.close_reason() != "client aborted the handshake") {
      fmt::print(stderr, "v2p vfilter: closing connection during handshake: {}\n",
                 hs.close_reason());
    }
    return false;
  }
  export_ = &ctx_.exports.at(*hs.selected());
  agreed_min_block_ = hs.block_size_agreed() ? export_->info.min_block : 1;
  const auto left = hs.leftover();
  rbuf_.assign(left.begin(), left.end());
  rpos_ = 0;
  const std::string& vm = export_->config.vm.empty() ? peer_vm_ : export_->config.vm;
  const auto ids =
      ctx_.registry.ids(vm, export_->config.vdisk, export_->data_path(), export_->opaque_pids);
  vm_name_ = vm;
  vm_id_ = ids.vm_id;
  vdisk_id_ = ids.vdisk_id;
  if (ExportTimings* t = ctx_.sink != nullptr ? ctx_.sink->timings() : nullptr) {
    timings_ = t->get(vm_id_, vdisk_id_);
  }
  return true;
}

bool Connection::read_exact(void* dst, std::size_t n) {
  auto* out = static_cast<std::byte*>(dst);
  while (n > 0) {
    if (rpos_ < rbuf_.size()) {
      const std::size_t take = std::min(n, rbuf_.size() - rpos_);
      std::memcpy(out, rbuf_.data() + rpos_, take);
      rpos_ += take;
      out += take;
      n -= take;
      continue;
    }
    // Large payloads go straight into their buffer; headers are read in chunks.
    const bool direct = n >= kReadChunk;
    if (!direct && rbuf_.size() != kReadChunk) rbuf_.resize(kReadChunk);
    const ssize_t r = direct ? ::recv(fd_, out, n, 0) : ::recv(fd_, rbuf_.data(), kReadChunk, 0);
    if (r < 0 && errno == EINTR) {
      if (!direct) rbuf_.clear();
      continue;
    }
    if (r <= 0) return false;
    if (direct) {
      out += r;
      n -= static_cast<std::size_t>(r);
    } else {
      rbuf_.resize(static_cast<std::size_t>(r));
      rpos_ = 0;
    }
  }
  return true;
}

bool Connection::discard(std::uint64_t n) {
  std::byte scratch[4096];
  while (n > 0) {
    const std::size_t take = std::min<std::uint64_t>(n, sizeof scratch);
    if (!read_exact(scratch, take)) return false;
    n -= take;
  }
  return true;
}

bool Connection::send_reply(std::uint64_t cookie, std::uint32_t error, const void* data,
                            std::size_t len) {
  const auto header = encode_simple_reply(cookie, error);
  iovec iov[2] = {{const_cast<std::byte*>(header.data()), header.size()},
                  {const_cast<void*>(data), len}};
  std::lock_guard lock(send_mu_);
  if (broken_.load()) return false;
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = len > 0 ? 2 : 1;
  while (msg.msg_iovlen > 0) {
    const ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // The client is gone: stop the reader; completions still drain and free everything.
      broken_.store(true);
      ::shutdown(fd_, SHUT_RDWR);
      return false;
    }
    auto left = static_cast<std::size_t>(n);
    while (msg.msg_iovlen > 0 && left >= msg.msg_iov->iov_len) {
      left -= msg.msg_iov->iov_len;
      ++msg.msg_iov;
      --msg.msg_iovlen;
    }
    if (msg.msg_iovlen > 0) {
      msg.msg_iov->iov_base = static_cast<std::byte*>(msg.msg_iov->iov_base) + left;
      msg.msg_iov->iov_len -= left;
    }
  }
  return true;
}

void Connection::serve() {
  if (const int rc = io_uring_queue_init(kRingEntries, &ring_, 0); rc < 0) {
    fmt::print(stderr, "v2p vfilter: io_uring_queue_init failed: {}\n", std::strerror(-rc));
    return;
  }
  ring_ready_ = true;
  completer_ = std::thread([this] { complete_loop(); });
  const ExportLimits limits{export_->info.size, export_->config.read_only, agreed_min_block_};

  std::byte header[nbd::kRequestSize];
  while (!broken_.load() && read_exact(header, sizeof header)) {
    const std::uint64_t received_ns = timings_ != nullptr ? monotonic_ns() : 0;
    const auto req = parse_request(header);
    if (!req) {
      fmt::print(stderr, "v2p vfilter: bad request magic; closing the connection\n");
      break;
    }
    ctx_.requests.fetch_add(1, std::memory_order_relaxed);
    const Validated v = validate_request(*req, limits);
    if (v.action == Action::kDisconnect) break;
    if (v.action == Action::kReplyError) {
      if (!discard(v.payload)) break;
      ctx_.errors.fetch_add(1, std::memory_order_relaxed);
      send_reply(req->cookie, v.error, nullptr, 0);
      continue;
    }
    const bool has_data = v.action == Action::kRead || v.action == Action::kWrite;
    const std::uint64_t bytes = has_data ? req->length : 0;
    wait_for_room(bytes);
    auto* p = new (std::nothrow) Pending;
    if (p != nullptr && has_data) {
      const std::size_t align = export_->image ? export_->image->direct_align() : kBufferAlign;
      p->buf = aligned_buffer(req->length, std::max<std::size_t>(kBufferAlign, align));
    }
    if (p == nullptr || (has_data && !p->buf)) {
      // Out of memory: refuse this request, keep the connection.
      delete p;
      {
        std::lock_guard lock(flight_mu_);
        --inflight_;
        inflight_bytes_ -= bytes;
      }
      flight_cv_.notify_all();
      if (!discard(v.payload)) break;
      ctx_.errors.fetch_add(1, std::memory_order_relaxed);
      send_reply(req->cookie, nbd::kEnomem, nullptr, 0);
      continue;
    }
    p->req = *req;
    p->received_ns = received_ns;
    p->action = v.action;
    p->room = bytes;
    if (v.action == Action::kWrite && !read_exact(p->buf.get(), req->length)) {
      finish(p, nbd::kEio);  // the client vanished mid-payload; nobody reads this reply
      break;
    }
    // Blocks while all slots of the process are in flight: never submit untagged.
    if (ctx_.tagging) p->slot = SlotLease(SlotAllocator::instance());
    begin(p);
  }

  {
    std::lock_guard lock(flight_mu_);
    reader_done_ = true;
  }
  // A no-op completion wakes the completer so it sees reader_done_ even with nothing in flight.
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
  ring_ready_ = false;
}

void Connection::wait_for_room(std::uint64_t bytes) {
  std::unique_lock lock(flight_mu_);
  flight_cv_.wait(lock, [&] {
    return inflight_ == 0 ||
           (inflight_ < kMaxInflight && inflight_bytes_ + bytes <= kMaxInflightBytes);
  });
  ++inflight_;
  inflight_bytes_ += bytes;
}

void Connection::begin(Pending* p) {
  switch (p->action) {
    case Action::kRead:
    case Action::kWrite:
      p->stage = Pending::Stage::kData;
      break;
    case Action::kTrim:
    case Action::kWriteZeroes:
      p->stage = Pending::Stage::kFallocate;
      break;
    case Action::kFlush:
      p->stage = Pending::Stage::kSync;
      break;
    default:
      return finish(p, nbd::kEinval);
  }
  // Zero-length data requests are valid and need no host I/O.
  if (p->stage != Pending::Stage::kSync && p->req.length == 0) return finish(p, 0);
  if (export_->backend) return submit_to_backend(p);
  submit(p);
}

template <class Prepare>
int Connection::submit_sqe(Prepare&& prepare) {
  std::lock_guard lock(sq_mu_);
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) return -EBUSY;  // cannot happen: the ring has room for twice the bound
  prepare(sqe);
  int rc = 0;
  do {
    rc = io_uring_submit(&ring_);
  } while (rc == -EINTR || rc == -EAGAIN || rc == -EBUSY);
  return rc < 0 ? rc : 0;
}

void Connection::submit(Pending* p) {
  const ImageFile& image = *export_->image;
  const std::uint64_t remaining = p->req.length - p->done;
  if (ctx_.tagging && p->stage == Pending::Stage::kData && p->action == Action::kWrite &&
      image.direct_writes_are_buffered()) {
    return submit_thread_tagged_write(p);
  }
  const int rc = submit_sqe([&](io_uring_sqe* sqe) {
    switch (p->stage) {
      case Pending::Stage::kData: {
        p->cur_off = p->req.offset + p->done;
        p->cur_len = static_cast<std::uint32_t>(remaining);
        const int fd = image.fd_for(p->cur_off, p->cur_len);
        std::byte* at = p->buf.get() + p->done;
        if (p->action == Action::kRead) {
          p->op = IoOp::kRead;
          io_uring_prep_read(sqe, fd, at, p->cur_len, p->cur_off);
        } else {
          p->op = IoOp::kWrite;
          io_uring_prep_write(sqe, fd, at, p->cur_len, p->cur_off);
        }
        break;
      }
      case Pending::Stage::kZeroFill:
        p->cur_off = p->req.offset + p->done;
        p->cur_len = static_cast<std::uint32_t>(std::min<std::uint64_t>(remaining, kZeroChunk));
        p->op = IoOp::kWriteZeroes;
        io_uring_prep_write(sqe, image.fd_for(p->cur_off, p->cur_len), zero_chunk(), p->cur_len,
                            p->cur_off);
        break;
      case Pending::Stage::kFallocate: {
        p->cur_off = p->req.offset;
        p->cur_len = p->req.length;
        const bool no_hole = (p->req.flags & nbd::kCmdFlagNoHole) != 0;
        int mode = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
        if (p->action == Action::kWriteZeroes && no_hole) {
          mode = FALLOC_FL_KEEP_SIZE | FALLOC_FL_ZERO_RANGE;
        }
        p->op = p->action == Action::kTrim ? IoOp::kDiscard : IoOp::kWriteZeroes;
        io_uring_prep_fallocate(sqe, image.buffered_fd(), mode, static_cast<off_t>(p->cur_off),
                                static_cast<off_t>(p->cur_len));
        break;
      }
      case Pending::Stage::kSync:
        // A full fsync: it also covers metadata (size, allocation of punched/zeroed ranges).
        p->cur_off = 0;
        p->cur_len = 0;
        p->op = IoOp::kFlush;
        io_uring_prep_fsync(sqe, image.buffered_fd(), 0);
        break;
    }
    // Only reads and writes take an ioprio: the kernel refuses one on fsync and fallocate
    // (EINVAL, measured on 6.18), and those carry no guest data to attribute anyway.
    const bool data_io = p->stage == Pending::Stage::kData || p->stage == Pending::Stage::kZeroFill;
    p->tagged = ctx_.tagging && data_io;
    // The kernel reads the slot's context when the bio is queued, after this submission.
    if (p->tagged && ctx_.slot_table) {
      ctx_.slot_table->publish(p->slot.slot(), vm_id_, vdisk_id_, p->cur_off);
    }
    sqe->ioprio = p->tagged ? v2p::tag::ioprio_for_slot(p->slot.slot()) : 0;
    io_uring_sqe_set_data(sqe, p);
    p->submit_ns = monotonic_ns();
    handoff_release(p);
  });
  if (rc < 0) on_host_complete(p, rc);
}

TaggedWorkers& Connection::workers() {
  std::lock_guard lock(sq_mu_);
  if (!workers_) {
    // Backends block for the whole request, so they get enough threads for the client's queue
    // depth; the btrfs write path only needs to cover QD32 on 2 cores.
    workers_ =
        std::make_unique<TaggedWorkers>(export_->backend ? export_->config.backend_threads : 4);
  }
  return *workers_;
}

void Connection::run_on_worker(Pending* p, std::uint16_t ioprio, TaggedWorkers::Job job) {
  TaggedWorkers& pool = workers();
  p->submit_ns = monotonic_ns();
  handoff_release(p);
  pool.run(ioprio, std::move(job), [this, p](int result) {
    p->thread_result = result;
    p->thread_done = true;
    const int rc = submit_sqe([p](io_uring_sqe* sqe) {
      io_uring_prep_nop(sqe);
      io_uring_sqe_set_data(sqe, p);
    });
    if (rc < 0) std::abort();  // the completer could never learn of this request
  });
}

void Connection::submit_thread_tagged_write(Pending* p) {
  const ImageFile& image = *export_->image;
  p->cur_off = p->req.offset + p->done;
  p->cur_len = static_cast<std::uint32_t>(p->req.length - p->done);
  p->op = IoOp::kWrite;
  p->tagged = true;
  if (ctx_.slot_table) ctx_.slot_table->publish(p->slot.slot(), vm_id_, vdisk_id_, p->cur_off);
  const int fd = image.fd_for(p->cur_off, p->cur_len);
  run_on_worker(p, v2p::tag::ioprio_for_slot(p->slot.slot()),
                [fd, p] { return pwrite_all(fd, p->buf.get() + p->done, p->cur_len, p->cur_off); });
}

void Connection::submit_to_backend(Pending* p) {
  p->via_backend = true;
  p->cur_off = p->req.offset;
  p->cur_len = p->req.length;
  const bool fua_flag = (p->req.flags & nbd::kCmdFlagFua) != 0;
  const Fua fua = fua_flag ? Fua::kYes : Fua::kNo;
  switch (p->action) {
    case Action::kRead:
      p->op = IoOp::kRead;
      break;
    case Action::kWrite:
      p->op = IoOp::kWrite;
      break;
    case Action::kWriteZeroes:
      p->op = IoOp::kWriteZeroes;
      break;
    case Action::kTrim:
      p->op = IoOp::kDiscard;
      break;
    default:
      p->op = IoOp::kFlush;
      p->cur_len = 0;
      break;
  }
  // Flushes and trims carry no guest data to attribute (and the ring path leaves them untagged).
  p->tagged = ctx_.tagging && p->op != IoOp::kFlush && p->op != IoOp::kDiscard;
  const std::uint16_t ioprio = p->tagged ? v2p::tag::ioprio_for_slot(p->slot.slot()) : 0;
  BlockBackend* backend = export_->backend.get();
  run_on_worker(p, ioprio, [this, backend, p, fua, ioprio]() -> int {
    const IoTarget who{vm_name_, export_->config.vdisk, vm_id_, vdisk_id_, ioprio, p->cur_off};
    switch (p->op) {
      case IoOp::kRead:
        return backend->read(who, std::span(p->buf.get(), p->cur_len), p->cur_off);
      case IoOp::kWrite:
        return backend->write(who, std::span<const std::byte>(p->buf.get(), p->cur_len), p->cur_off,
                              fua);
      case IoOp::kWriteZeroes: {
        const bool no_hole = (p->req.flags & nbd::kCmdFlagNoHole) != 0;
        return backend->write_zeroes(who, p->cur_off, p->cur_len,
                                     no_hole ? MayPunch::kNo : MayPunch::kYes, fua);
      }
      case IoOp::kDiscard:
        return backend->trim(who, p->cur_off, p->cur_len);
      default:
        return backend->flush(who);
    }
  });
}

void Connection::publish(const Pending* p, int res, std::uint64_t complete_ns) noexcept {
  if (ctx_.sink == nullptr) return;
  ContextRecord r;
  r.submit_ns = p->submit_ns;
  r.complete_ns = complete_ns;
  r.voffset = p->cur_off;
  r.length = p->cur_len;
  // On an opaque backend the host I/O is the upstream process's and carries no tag: the record
  // names that process (0 when several serve the vdisk) and slot 0, for the window join.
  const auto& opaque = export_->opaque_pids;
  r.tgid = opaque.empty()       ? static_cast<std::uint32_t>(::getpid())
           : opaque.size() == 1 ? static_cast<std::uint32_t>(opaque.front())
                                : 0;
  r.vm_id = vm_id_;
  r.vdisk_id = vdisk_id_;
  r.result = res < 0 ? res : 0;
  r.slot = p->tagged && opaque.empty() ? p->slot.slot() : 0;
  r.op = static_cast<std::uint8_t>(p->op);
  if (p->req.flags & nbd::kCmdFlagFua) r.flags |= kContextFua;
  if (p->req.flags & nbd::kCmdFlagNoHole) r.flags |= kContextNoHole;
  r.seq = g_record_seq.fetch_add(1, std::memory_order_relaxed);
  ctx_.sink->publish(r);
}

void Connection::on_host_complete(Pending* p, int res) {
  publish(p, res, monotonic_ns());
  const bool fua = (p->req.flags & nbd::kCmdFlagFua) != 0;
  switch (p->stage) {
    case Pending::Stage::kData:
    case Pending::Stage::kZeroFill:
      if (res < 0) return finish(p, nbd::errno_to_nbd(-res));
      if (res == 0) return finish(p, p->action == Action::kRead ? nbd::kEio : nbd::kEnospc);
      p->done += static_cast<std::uint64_t>(res);
      if (p->done < p->req.length) return submit(p);  // short transfer: continue where it ended
      break;
    case Pending::Stage::kFallocate:
      if (res == -EOPNOTSUPP || res == -ENODEV) {
        // Trim is advisory; zeroing falls back to writing zeros.
        if (p->action == Action::kWriteZeroes) {
          p->stage = Pending::Stage::kZeroFill;
          p->done = 0;
          return submit(p);
        }
      } else if (res < 0) {
        return finish(p, nbd::errno_to_nbd(-res));
      }
      break;
    case Pending::Stage::kSync:
      return finish(p, res < 0 ? nbd::errno_to_nbd(-res) : 0);
  }
  // Data is in place; FUA means it must be durable before the reply.
  if (fua && p->action != Action::kRead) {
    p->stage = Pending::Stage::kSync;
    return submit(p);
  }
  finish(p, 0);
}

void Connection::finish(Pending* p, std::uint32_t error) {
  // The host I/O is over: free the slot before the client can see the reply.
  p->slot.reset();
  if (error == 0 && p->action == Action::kRead) {
    send_reply(p->req.cookie, 0, p->buf.get(), p->req.length);
    ctx_.bytes_read.fetch_add(p->req.length, std::memory_order_relaxed);
  } else {
    send_reply(p->req.cookie, error, nullptr, 0);
    if (error != 0) {
      ctx_.errors.fetch_add(1, std::memory_order_relaxed);
    } else if (p->action == Action::kWrite) {
      ctx_.bytes_written.fetch_add(p->req.length, std::memory_order_relaxed);
    }
  }
  if (timings_ != nullptr) {
    const std::size_t op = p->action == Action::kRead ? 0 : p->action == Action::kWrite ? 1 : 2;
    timings_->add(op, op == 2 ? 0 : p->req.length, monotonic_ns() - p->received_ns);
  }
  const std::uint64_t room = p->room;
  delete p;
  {
    std::lock_guard lock(flight_mu_);
    --inflight_;
    inflight_bytes_ -= room;
  }
  flight_cv_.notify_all();
}

void Connection::complete_loop() noexcept {
  for (;;) {
    io_uring_cqe* cqe = nullptr;
    const int rc = io_uring_wait_cqe(&ring_, &cqe);
    if (rc == 0) {
      auto* p = static_cast<Pending*>(io_uring_cqe_get_data(cqe));
      if (p != nullptr) handoff_acquire(p);
      int res = cqe->res;
      if (p != nullptr && p->thread_done) {
        res = p->thread_result;
        p->thread_done = false;
      }
      io_uring_cqe_seen(&ring_, cqe);
      if (p != nullptr && p->via_backend) {
        publish(p, res, monotonic_ns());
        finish(p, res < 0 ? nbd::errno_to_nbd(-res) : 0);
      } else if (p != nullptr) {
        on_host_complete(p, res);
      }
    }
    std::lock_guard lock(flight_mu_);
    if (reader_done_ && inflight_ == 0) return;
  }
}

}  // namespace v2p::vfilter
