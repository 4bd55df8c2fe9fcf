#include "vfilter/connection.hpp"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "common/clock.hpp"
#include "vfilter/file_backend.hpp"
#include "vfilter/nbd_block_status.hpp"
#include "vfilter/nbd_meta_context.hpp"
#include "vfilter/nbd_tls.hpp"
#include "vfilter/nbd_wire.hpp"

namespace v2p::vfilter {

namespace {

constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::size_t kBufferAlign = 4096;
constexpr unsigned kRingEntries = 2 * Connection::kMaxInflight;

StageOp stage_op(Action a) noexcept {
  switch (a) {
    case Action::kRead:
    case Action::kCache:  // a read whose data is dropped: the reply carries none
      return StageOp::kRead;
    case Action::kWrite:
      return StageOp::kWrite;
    case Action::kTrim:
      return StageOp::kTrim;
    case Action::kWriteZeroes:
      return StageOp::kZero;
    default:
      return StageOp::kFlush;
  }
}

}  // namespace

void Pending::done(int result) noexcept {
  // A stage that answers with a positive number broke the 0-or-errno rule: the guest gets EIO.
  conn->finish(this, result < 0 ? nbd::errno_to_nbd(-result) : result > 0 ? nbd::kEio : 0);
}

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
  if (tls_) tls_->bye();
  std::lock_guard lock(fd_mu_);
  ::close(fd_);
  finished_.store(true);
}

ssize_t Connection::receive(void* buf, std::size_t len) {
  return tls_ ? tls_->recv(buf, len) : ::recv(fd_, buf, len, 0);
}

bool Connection::start_tls() {
  tls_ = std::make_unique<TlsSession>(*ctx_.tls, fd_);
  return tls_->handshake();
}

bool Connection::negotiate() {
  std::vector<ExportInfo> infos;
  for (const auto& e : ctx_.exports) infos.push_back(e.info);
  // TLS, when configured, is required on TCP; a unix socket is guarded by its permissions.
  sockaddr_storage local{};
  socklen_t local_len = sizeof local;
  const bool tcp = ::getsockname(fd_, reinterpret_cast<sockaddr*>(&local), &local_len) == 0 &&
                   (local.ss_family == AF_INET || local.ss_family == AF_INET6);
  Handshake hs(std::move(infos), ctx_.tls && tcp ? TlsMode::kRequired : TlsMode::kNone);
  const auto send_all = [this](const std::vector<std::byte>& out) {
    if (tls_) return tls_->send_all(out.data(), out.size());
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
    if (hs.wants_tls()) {
      if (!start_tls()) return false;
      hs.tls_started();
      continue;
    }
    const ssize_t n = receive(tmp.data(), tmp.size());
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
  reply_style_ = hs.reply_style();
  base_allocation_ = hs.base_allocation();
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
    const ssize_t r = direct ? receive(out, n) : receive(rbuf_.data(), kReadChunk);
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

bool Connection::send_status(const RequestHeader& req, std::uint32_t error) {
  const ReplyTo to{req.cookie, req.offset};
  // With structured replies a READ is never answered simply; errors carry a chunk for all.
  const bool chunk =
      reply_style_ != ReplyStyle::kSimple && (error != 0 || req.type == nbd::kCmdRead);
  const ReplyFrame f = chunk && error != 0 ? error_chunk(reply_style_, to, error)
                                           : status_reply(reply_style_, to, error);
  return send_frame(f.bytes(), nullptr, 0);
}

bool Connection::send_read(const RequestHeader& req, const std::byte* data, std::size_t len) {
  const ReplyTo to{req.cookie, req.offset};
  // A read of zeros goes out as a 12-byte hole chunk instead of its data (what qemu-nbd does
  // for sparse images). The scan stops at the first non-zero byte, so data costs next to nothing.
  if (reply_style_ != ReplyStyle::kSimple && len > 0 && data[0] == std::byte{0} &&
      std::memcmp(data, data + 1, len - 1) == 0) {
    return send_frame(hole_reply(reply_style_, to, static_cast<std::uint32_t>(len)).bytes(),
                      nullptr, 0);
  }
  return send_frame(read_reply(reply_style_, to, len).bytes(), data, len);
}

void Connection::answer_block_status(const RequestHeader& req) {
  // Bounds the reply (8 bytes per extent) and the lseeks one request may cost.
  constexpr std::size_t kMaxExtents = 1 << 16;
  const bool one = (req.flags & nbd::kCmdFlagReqOne) != 0;
  // Holes are known for a plain image; any other stack reports every range as data (fd -1).
  const auto* image = dynamic_cast<const FileBackend*>(export_->backend.get());
  const int fd = image != nullptr ? image->image().buffered_fd() : -1;
  const auto extents =
      allocation_extents(fd, req.offset, req.length, export_->info.size, one ? 1 : kMaxExtents);
  const auto chunk =
      block_status_reply(reply_style_, {req.cookie, req.offset}, kBaseAllocationId, extents);
  send_frame(chunk, nullptr, 0);
}

bool Connection::send_frame(std::span<const std::byte> head, const void* data, std::size_t len) {
  iovec iov[2] = {{const_cast<std::byte*>(head.data()), head.size()},
                  {const_cast<void*>(data), len}};
  std::lock_guard lock(send_mu_);
  if (broken_.load()) return false;
  if (tls_) {
    tls_->cork();
    const bool ok = tls_->send_all(head.data(), head.size()) &&
                    (len == 0 || tls_->send_all(data, len)) && tls_->uncork();
    if (!ok) {
      broken_.store(true);
      ::shutdown(fd_, SHUT_RDWR);
    }
    return ok;
  }
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
  BlockBackend& stack = *export_->backend;
  try {
    IoChannel::Options o;
    o.sink = ctx_.sink;
    o.slot_table = ctx_.tagging ? &ctx_.slot_table : nullptr;
    o.opaque_pids = &export_->opaque_pids;
    // Blocking stages hold a worker for the whole request: enough for the client's queue depth.
    // An asynchronous stack needs workers only for file systems that buffer direct writes.
    o.worker_threads = stack.asynchronous() ? 4 : export_->config.backend_threads;
    o.ring_entries = kRingEntries;
    channel_ = std::make_unique<IoChannel>(o);
  } catch (const std::exception& e) {
    fmt::print(stderr, "v2p vfilter: {}\n", e.what());
    return;
  }
  const ExportLimits limits{export_->info.size, export_->config.read_only, agreed_min_block_,
                            reply_style_ != ReplyStyle::kSimple, base_allocation_};
  const std::size_t align = std::max<std::size_t>(kBufferAlign, stack.buffer_align());

  std::byte header[nbd::kRequestSize];
  while (!broken_.load() && read_exact(header, sizeof header)) {
    const std::uint64_t received_ns = timings_ != nullptr ? monotonic_ns() : 0;
    auto req = parse_request(header);
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
      send_status(*req, v.error);
      continue;
    }
    if (v.action == Action::kBlockStatus) {
      answer_block_status(*req);
      continue;
    }
    // CACHE is advisory: it prefetches at most one payload's worth.
    if (v.action == Action::kCache) req->length = std::min(req->length, nbd::kMaxPayload);
    const bool has_data =
        v.action == Action::kRead || v.action == Action::kWrite || v.action == Action::kCache;
    const std::uint64_t bytes = has_data ? req->length : 0;
    wait_for_room(bytes);
    auto* p = new (std::nothrow) Pending;
    if (p == nullptr || (has_data && !p->buf.try_resize(req->length, align))) {
      // Out of memory: refuse this request, keep the connection.
      delete p;
      {
        std::lock_guard lock(flight_mu_);
        --reserved_;
        inflight_bytes_ -= bytes;
      }
      flight_cv_.notify_all();
      if (!discard(v.payload)) break;
      ctx_.errors.fetch_add(1, std::memory_order_relaxed);
      send_status(*req, nbd::kEnomem);
      continue;
    }
    p->conn = this;
    p->req = *req;
    p->received_ns = received_ns;
    p->action = v.action;
    p->room = bytes;
    {
      std::lock_guard lock(flight_mu_);
      inflight_.push_back(*p);
    }
    if (v.action == Action::kWrite && !read_exact(p->buf.data(), req->length)) {
      finish(p, nbd::kEio);  // the client vanished mid-payload; nobody reads this reply
      break;
    }
    // Blocks while all slots of the process are in flight: never submit untagged.
    if (ctx_.tagging) p->slot = SlotLease(SlotAllocator::instance());
    begin(p);
  }

  // Everything handed to the stack ends before the channel (and its ring) goes.
  {
    std::unique_lock lock(flight_mu_);
    flight_cv_.wait(lock, [&] { return reserved_ == 0; });
  }
  channel_.reset();
}

void Connection::wait_for_room(std::uint64_t bytes) {
  std::unique_lock lock(flight_mu_);
  flight_cv_.wait(lock, [&] {
    return reserved_ == 0 ||
           (reserved_ < kMaxInflight && inflight_bytes_ + bytes <= kMaxInflightBytes);
  });
  ++reserved_;
  inflight_bytes_ += bytes;
}

void Connection::begin(Pending* p) {
  StageIo& io = p->io;
  io.op = stage_op(p->action);
  io.offset = p->req.offset;
  io.length = io.op == StageOp::kFlush ? 0 : p->req.length;
  io.buf = p->buf.data();
  io.fua = (p->req.flags & nbd::kCmdFlagFua) != 0 ? Fua::kYes : Fua::kNo;
  io.may_punch = (p->req.flags & nbd::kCmdFlagNoHole) != 0 ? MayPunch::kNo : MayPunch::kYes;
  io.who = IoTarget{vm_name_, export_->config.vdisk, vm_id_, vdisk_id_, 0, p->req.offset, &io};
  io.channel = channel_.get();
  io.tagging = ctx_.tagging;
  io.slot = ctx_.tagging ? p->slot.slot() : 0;
  io.who.ioprio = io.ioprio();  // what a filter sees as ctx.tag
  io.done = p;
  // Zero-length data requests are valid and need no host I/O.
  if (io.op != StageOp::kFlush && io.length == 0) return finish(p, 0);
  export_->backend->submit(io);
}

void Connection::finish(Pending* p, std::uint32_t error) {
  // The host I/O is over: free the slot before the client can see the reply.
  p->slot.reset();
  if (error == 0 && p->action == Action::kRead) {
    send_read(p->req, p->buf.data(), p->req.length);
    ctx_.bytes_read.fetch_add(p->req.length, std::memory_order_relaxed);
  } else {
    send_status(p->req, error);
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
  {
    std::lock_guard lock(flight_mu_);
    inflight_.erase(inflight_.iterator_to(*p));
    --reserved_;
    inflight_bytes_ -= room;
  }
  delete p;
  flight_cv_.notify_all();
}

}  // namespace v2p::vfilter
