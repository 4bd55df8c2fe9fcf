#include "vfilter/vhost_user/blk_device.hpp"

#include <fcntl.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_config.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "common/clock.hpp"
#include "v2p/tag.hpp"
#include "vfilter/file_backend.hpp"
#include "vfilter/record_seq.hpp"

namespace v2p::vfilter::vhost_user {

namespace {

// The image of a vdisk whose stack is the image stage alone: its requests go straight between
// guest memory and the file on this queue's ring. Null for any other stack.
const ImageFile* plain_image(const ExportRuntime& e) {
  const auto* file = dynamic_cast<const FileBackend*>(e.backend.get());
  return file != nullptr ? &file->image() : nullptr;
}

constexpr std::uint64_t kMaxRequestBytes = 32ULL << 20;  // as NBD's maximum payload
constexpr std::uint32_t kSizeMax = 1U << 20;             // largest segment we advertise
constexpr std::size_t kBufferAlign = 4096;
// user_data of the ring's polls on the kick and wake eventfds (a Work* is never this small).
constexpr std::uint64_t kKickTag = 1;
constexpr std::uint64_t kWakeTag = 2;

void close_fd(int& fd) noexcept {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

void close_all(std::vector<int>& fds) noexcept {
  for (int& fd : fds) close_fd(fd);
  fds.clear();
}

template <class T>
bool read_payload(std::span<const std::byte> p, T& out) noexcept {
  if (p.size() < sizeof(T)) return false;
  std::memcpy(&out, p.data(), sizeof(T));
  return true;
}

template <class T>
std::vector<std::byte> bytes_of(const T& v) {
  std::vector<std::byte> out(sizeof(T));
  std::memcpy(out.data(), &v, sizeof(T));
  return out;
}

}  // namespace

BlkDevice::BlkDevice(ServerContext& ctx, const ExportRuntime& exp,
                     std::shared_ptr<BlockBackend> backend, const std::string& vm,
                     BlkDeviceOptions options)
    : ctx_(ctx),
      export_(exp),
      backend_(std::move(backend)),
      vm_(vm),
      options_(options),
      size_(exp.info.size),
      read_only_(exp.info.read_only) {
  options_.queues = std::clamp(options_.queues, 1U, 64U);
  const auto ids = ctx_.registry.ids(vm_, exp.config.vdisk, exp.data_path(), exp.opaque_pids);
  vm_id_ = ids.vm_id;
  vdisk_id_ = ids.vdisk_id;
  for (unsigned i = 0; i < options_.queues; ++i) queues_.push_back(std::make_unique<Queue>());
  workers_ = std::make_unique<TaggedWorkers>(std::max(1U, options_.threads));
}

BlkDevice::~BlkDevice() {
  reset();
  workers_.reset();  // every job has finished (reset waited), the threads join
  for (auto& q : queues_) {
    for (auto& w : q->works) std::free(w.bounce);
  }
}

std::uint64_t BlkDevice::device_features() const noexcept {
  std::uint64_t f = kFVersion1 | kFProtocolFeatures | (1ULL << VIRTIO_BLK_F_SIZE_MAX) |
                    (1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_BLK_SIZE) |
                    (1ULL << VIRTIO_BLK_F_FLUSH) | (1ULL << VIRTIO_BLK_F_MQ);
  if (read_only_) return f | (1ULL << VIRTIO_BLK_F_RO);
  if (export_.info.can_trim) f |= 1ULL << VIRTIO_BLK_F_DISCARD;
  if (export_.info.can_zero) f |= 1ULL << VIRTIO_BLK_F_WRITE_ZEROES;
  return f;
}

std::vector<std::byte> BlkDevice::config_space() const {
  virtio_blk_config c{};
  c.capacity = size_ / kSectorSize;
  c.size_max = kSizeMax;
  // Without indirect descriptors a request's buffers, header and status must fit the ring:
  // QEMU's default vhost-user-blk queue has 128 entries.
  c.seg_max = 128 - 2;
  c.blk_size = kSectorSize;
  c.num_queues = static_cast<std::uint16_t>(options_.queues);
  c.max_discard_sectors = kMaxRangeSectors;
  c.max_discard_seg = 1;
  c.discard_sector_alignment = 4096 / kSectorSize;
  c.max_write_zeroes_sectors = kMaxRangeSectors;
  c.max_write_zeroes_seg = 1;
  c.write_zeroes_may_unmap = 1;
  return bytes_of(c);
}

BlkDevice::Reply BlkDevice::handle(std::uint32_t request, std::uint32_t flags,
                                   std::span<const std::byte> payload, std::vector<int>& fds) {
  Reply r;
  const bool need_reply = (flags & kFlagNeedReply) && (protocol_features_ & kProtoReplyAck);
  const auto ack = [&](bool ok) {
    if (!need_reply) return;
    r.send = true;
    r.payload = bytes_of(std::uint64_t{ok ? 0U : 1U});
  };
  const auto reply_u64 = [&](std::uint64_t v) {
    r.send = true;
    r.payload = bytes_of(v);
  };
  const auto violation = [&](const char* why) {
    fmt::print(stderr, "v2p vhost-user: {} (request {}): closing the session\n", why, request);
    close_all(fds);
    r = Reply{};
    r.close = true;
    return r;
  };
  std::uint64_t u64 = 0;
  VringState state{};
  switch (request) {
    case kGetFeatures:
      reply_u64(device_features());
      break;
    case kSetFeatures:
      if (!read_payload(payload, u64)) return violation("short SET_FEATURES");
      features_ = u64 & device_features();
      ack(true);
      break;
    case kSetOwner:
      owner_ = true;
      ack(true);
      break;
    case kResetOwner:
      for (unsigned i = 0; i < queues_.size(); ++i) stop_queue(i);
      owner_ = false;
      ack(true);
      break;
    case kGetProtocolFeatures:
      reply_u64(kProtoMq | kProtoReplyAck | kProtoConfig);
      break;
    case kSetProtocolFeatures:
      if (!read_payload(payload, u64)) return violation("short SET_PROTOCOL_FEATURES");
      protocol_features_ = u64 & (kProtoMq | kProtoReplyAck | kProtoConfig);
      ack(true);
      break;
    case kGetQueueNum:
      reply_u64(queues_.size());
      break;
    case kSetMemTable: {
      std::uint32_t n = 0;
      if (!read_payload(payload, n) || n == 0 || n > kMaxRegions ||
          payload.size() < 8 + std::size_t{n} * sizeof(MemRegion) || fds.size() != n) {
        return violation("malformed SET_MEM_TABLE");
      }
      std::vector<MemRegion> regions(n);
      std::memcpy(regions.data(), payload.data() + 8, n * sizeof(MemRegion));
      auto mem = std::make_shared<GuestMemory>();
      const std::string err = mem->map(regions, fds);
      close_all(fds);  // the mappings hold the memory
      if (!err.empty()) {
        fmt::print(stderr, "v2p vhost-user: SET_MEM_TABLE: {}\n", err);
        ack(false);
        break;
      }
      // Requests in flight point into the old mapping: stop, swap, restart.
      std::vector<unsigned> restart;
      for (unsigned i = 0; i < queues_.size(); ++i) {
        if (queues_[i]->running) restart.push_back(i);
        stop_queue(i);
      }
      mem_ = std::move(mem);
      for (const unsigned i : restart) start_queue(i);
      ack(true);
      break;
    }
    case kSetVringNum:
      if (!read_payload(payload, state) || state.index >= queues_.size())
        return violation("bad SET_VRING_NUM");
      if (state.num == 0 || state.num > SplitQueue::kMaxSize || (state.num & (state.num - 1)))
        return violation("vring size is not a power of two up to 32768");
      queues_[state.index]->num = state.num;
      ack(true);
      break;
    case kSetVringAddr: {
      VringAddr a{};
      if (!read_payload(payload, a) || a.index >= queues_.size())
        return violation("bad SET_VRING_ADDR");
      queues_[a.index]->addr = a;
      queues_[a.index]->addr_set = true;
      ack(true);
      break;
    }
    case kSetVringBase:
      if (!read_payload(payload, state) || state.index >= queues_.size())
        return violation("bad SET_VRING_BASE");
      queues_[state.index]->base = static_cast<std::uint16_t>(state.num);
      ack(true);
      break;
    case kGetVringBase: {
      if (!read_payload(payload, state) || state.index >= queues_.size())
        return violation("bad GET_VRING_BASE");
      Queue& q = *queues_[state.index];
      stop_queue(state.index);
      close_fd(q.kick);
      q.enabled = false;
      r.send = true;
      r.payload = bytes_of(VringState{state.index, q.base});
      break;
    }
    case kSetVringKick:
    case kSetVringCall:
    case kSetVringErr: {
      if (!read_payload(payload, u64) || (u64 & kVringIndexMask) >= queues_.size())
        return violation("bad vring fd message");
      const bool no_fd = (u64 & kVringNoFd) != 0;
      if (no_fd != fds.empty() || fds.size() > 1) return violation("vring fd count mismatch");
      const unsigned i = static_cast<unsigned>(u64 & kVringIndexMask);
      Queue& q = *queues_[i];
      int fd = no_fd ? -1 : fds[0];
      fds.clear();
      if (request == kSetVringErr) {
        close_fd(fd);  // errors are reported by closing the session, not through this fd
      } else if (request == kSetVringCall) {
        std::lock_guard lock(q.used_mu);
        close_fd(q.call);
        q.call = fd;
      } else {
        // Polling mode (no kick fd) is not offered.
        if (fd < 0) return violation("SET_VRING_KICK without a fd");
        stop_queue(i);
        close_fd(q.kick);
        // Reads of a kick never block: a poll may report a kick another read already took.
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
        q.kick = fd;
        // Without VHOST_USER_F_PROTOCOL_FEATURES a ring is enabled once it starts.
        if (!(features_ & kFProtocolFeatures)) q.enabled = true;
        if (!start_queue(i)) {
          ack(false);
          break;
        }
      }
      ack(true);
      break;
    }
    case kSetVringEnable: {
      if (!read_payload(payload, state) || state.index >= queues_.size())
        return violation("bad SET_VRING_ENABLE");
      Queue& q = *queues_[state.index];
      q.enabled = state.num != 0;
      if (q.wake >= 0) ::eventfd_write(q.wake, 1);  // look at the ring now
      ack(true);
      break;
    }
    case kGetConfig: {
      ConfigHeader h{};
      if (!read_payload(payload, h) || h.size > kMaxPayload - sizeof h ||
          payload.size() < sizeof h + h.size) {
        return violation("bad GET_CONFIG");
      }
      const auto config = config_space();
      std::vector<std::byte> out(sizeof h + h.size);
      std::memcpy(out.data(), &h, sizeof h);
      // Bytes past our config space read as zeros.
      if (h.offset < config.size()) {
        const std::size_t n = std::min<std::size_t>(h.size, config.size() - h.offset);
        std::memcpy(out.data() + sizeof h, config.data() + h.offset, n);
      }
      r.send = true;
      r.payload = std::move(out);
      break;
    }
    case kSetConfig:
      ack(true);  // nothing in our config space is writable (no CONFIG_WCE)
      break;
    default:
      // Logging, inflight tracking, postcopy...: not offered, so a frontend should not ask.
      close_all(fds);
      ack(false);
      if (!need_reply && request != kSetLogBase && request != kSetLogFd) {
        fmt::print(stderr, "v2p vhost-user: ignoring request {}\n", request);
      }
      break;
  }
  close_all(fds);
  return r;
}

bool BlkDevice::start_queue(unsigned i) {
  Queue& q = *queues_[i];
  if (q.running || !mem_ || q.num == 0 || !q.addr_set || q.kick < 0) return false;
  if (!q.vq.configure(*mem_, q.num, q.addr.desc_user_addr, q.addr.avail_user_addr,
                      q.addr.used_user_addr)) {
    fmt::print(stderr, "v2p vhost-user: queue {}: rings outside guest memory\n", i);
    return false;
  }
  q.vq.set_last_avail(q.base);
  if (q.works.size() != q.num) {
    for (auto& w : q.works) std::free(w.bounce);
    q.works = std::vector<Work>(q.num);
    for (auto& w : q.works) w.segs.resize(kMaxSegments);
  }
  if (q.wake < 0) q.wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (q.wake < 0) return false;
  q.stopping = false;
  q.running = true;
  q.thread = std::thread([this, i] { run_queue(i); });
  return true;
}

void BlkDevice::stop_queue(unsigned i) {
  Queue& q = *queues_[i];
  if (!q.running) return;
  q.stopping = true;
  ::eventfd_write(q.wake, 1);
  q.thread.join();
  std::unique_lock lock(q.flight_mu);
  q.flight_cv.wait(lock, [&] { return q.inflight == 0; });
  q.base = q.vq.last_avail();
  q.running = false;
}

void BlkDevice::reset() {
  for (unsigned i = 0; i < queues_.size(); ++i) {
    Queue& q = *queues_[i];
    stop_queue(i);
    close_fd(q.kick);
    close_fd(q.call);
    close_fd(q.wake);
    q.vq.reset();
    q.num = 0;
    q.addr_set = false;
    q.base = 0;
    q.enabled = false;
  }
  mem_.reset();
  features_ = 0;
  protocol_features_ = 0;
  owner_ = false;
}

void BlkDevice::run_queue(unsigned i) noexcept {
  Queue& q = *queues_[i];
  std::vector<Segment> scratch(kMaxSegments);
  const GuestMemory& mem = *mem_;
  bool broken = false;
  if (plain_image(export_) != nullptr && !q.ring_ready) {
    // The ring also watches the kick and wake eventfds (multishot polls), so the thread waits
    // in one place for a guest kick and for the disk: one system call per turn, not three.
    const unsigned entries = std::min(2 * q.num + 2, 4096U);
    if (io_uring_queue_init(entries, &q.ring, 0) == 0) {
      for (const auto& [fd, tag] : {std::pair{q.kick, kKickTag}, std::pair{q.wake, kWakeTag}}) {
        io_uring_sqe* sqe = io_uring_get_sqe(&q.ring);
        io_uring_prep_poll_multishot(sqe, fd, POLLIN);
        sqe->user_data = tag;
      }
      q.ring_unsubmitted = 2;
      q.ring_ready = true;
    }
  }
  while (!q.stopping.load()) {
    while (q.enabled.load() && !broken && !q.stopping.load()) {
      std::uint16_t head = 0;
      std::size_t n = 0;
      const auto res = q.vq.pop(mem, head, scratch, n);
      if (res == SplitQueue::Pop::kEmpty) break;
      // (kBroken is checked first: its head may be out of range.)
      if (res == SplitQueue::Pop::kBroken || q.works[head].nsegs != 0) {
        // An index that ran ahead, a head out of range or one still in flight: the guest's
        // ring cannot be trusted any more; stop serving it until the frontend resets it.
        fmt::print(stderr, "v2p vhost-user: queue {}: inconsistent ring; stopped\n", i);
        broken = true;
        break;
      }
      Work& w = q.works[head];
      w.head = head;
      if (res == SplitQueue::Pop::kBadChain) {
        fmt::print(stderr, "v2p vhost-user: queue {}: malformed descriptor chain {}\n", i, head);
        w.nsegs = 1;  // busy until complete() hands it back
        {
          std::lock_guard lock(q.flight_mu);
          ++q.inflight;
        }
        complete(q, w, VIRTIO_BLK_S_IOERR, 0);
        continue;
      }
      std::copy_n(scratch.begin(), n, w.segs.begin());
      w.nsegs = std::max<std::size_t>(n, 1);
      {
        std::lock_guard lock(q.flight_mu);
        ++q.inflight;
      }
      dispatch(q, w);
    }
    if (q.ring_ready) {
      io_uring_submit_and_wait(&q.ring, 1);
      q.ring_unsubmitted = 0;
      reap_ring(q);
      continue;
    }
    pollfd fds[2] = {{q.kick, POLLIN, 0}, {q.wake, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) break;
    eventfd_t v = 0;
    if (fds[0].revents & POLLIN) ::eventfd_read(q.kick, &v);
    if (fds[1].revents & POLLIN) ::eventfd_read(q.wake, &v);
  }
  // Requests on the ring complete before the queue stops: their buffers are guest memory.
  if (q.ring_ready) {
    while (q.ring_inflight > 0) {
      io_uring_submit_and_wait(&q.ring, 1);
      q.ring_unsubmitted = 0;
      reap_ring(q);
    }
    io_uring_queue_exit(&q.ring);  // cancels the polls
    q.ring_ready = false;
  }
}

bool BlkDevice::submit_ring(Queue& q, Work& w) noexcept {
  if (!q.ring_ready || (w.op != IoOp::kRead && w.op != IoOp::kWrite)) return false;
  const ImageFile& image = *plain_image(export_);
  if (image.direct_writes_are_buffered() && w.op == IoOp::kWrite) return false;
  const auto& data = w.req.data;
  if (w.iov.size() < data.size()) w.iov.resize(kMaxSegments);
  // O_DIRECT needs every buffer aligned too; otherwise the buffered descriptor takes it.
  const std::uint32_t align = image.direct_align();
  bool aligned = true;
  for (std::size_t k = 0; k < data.size(); ++k) {
    w.iov[k] = {data[k].ptr, data[k].len};
    aligned = aligned && reinterpret_cast<std::uintptr_t>(data[k].ptr) % align == 0 &&
              data[k].len % align == 0;
  }
  const int fd = aligned ? image.fd_for(w.req.offset, w.req.length) : image.buffered_fd();
  io_uring_sqe* sqe = io_uring_get_sqe(&q.ring);
  if (sqe == nullptr) {
    io_uring_submit(&q.ring);
    q.ring_unsubmitted = 0;
    sqe = io_uring_get_sqe(&q.ring);
    if (sqe == nullptr) return false;
  }
  const auto n = static_cast<unsigned>(data.size());
  if (w.op == IoOp::kRead) {
    io_uring_prep_readv(sqe, fd, w.iov.data(), n, w.req.offset);
  } else {
    io_uring_prep_writev(sqe, fd, w.iov.data(), n, w.req.offset);
  }
  // The kernel reads the slot's context when the bio is queued, after this submission.
  if (auto* table = ctx_.slot_table.load(std::memory_order_acquire); w.tagged && table) {
    table->publish(w.slot.slot(), vm_id_, vdisk_id_, w.req.offset);
  }
  sqe->ioprio = w.tagged ? v2p::tag::ioprio_for_slot(w.slot.slot()) : 0;
  io_uring_sqe_set_data(sqe, &w);
  ++q.ring_inflight;
  ++q.ring_unsubmitted;
  return true;
}

void BlkDevice::reap_ring(Queue& q) noexcept {
  io_uring_cqe* cqe = nullptr;
  bool any = false;
  // One interrupt for everything reaped here, not one per request.
  while (io_uring_peek_cqe(&q.ring, &cqe) == 0) {
    const std::uint64_t tag = cqe->user_data;
    int res = cqe->res;
    const bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    io_uring_cqe_seen(&q.ring, cqe);
    if (tag == kKickTag || tag == kWakeTag) {
      const int fd = tag == kKickTag ? q.kick : q.wake;
      eventfd_t v = 0;
      if (res >= 0) ::eventfd_read(fd, &v);
      if (!more) {  // the kernel ended the multishot poll: arm it again
        io_uring_sqe* sqe = io_uring_get_sqe(&q.ring);
        if (sqe != nullptr) {
          io_uring_prep_poll_multishot(sqe, fd, POLLIN);
          sqe->user_data = tag;
          ++q.ring_unsubmitted;
        }
      }
      continue;
    }
    any = true;
    auto* w = reinterpret_cast<Work*>(tag);
    --q.ring_inflight;
    // A short transfer inside the image is an I/O error to the guest (never seen on files).
    if (res >= 0 && static_cast<std::uint64_t>(res) != w->req.length) res = -EIO;
    finish(q, *w, res, false);
  }
  if (any) notify_guest(q);
}

void BlkDevice::notify_guest(Queue& q) noexcept {
  std::lock_guard lock(q.used_mu);
  if (q.vq.should_notify() && q.call >= 0) ::eventfd_write(q.call, 1);
}

void BlkDevice::dispatch(Queue& q, Work& w) noexcept {
  const auto parsed =
      parse_blk_request(std::span(w.segs.data(), w.nsegs), size_, read_only_, w.req);
  ctx_.requests.fetch_add(1, std::memory_order_relaxed);
  requests_.fetch_add(1, std::memory_order_relaxed);
  switch (parsed) {
    case BlkParse::kNoStatus:
      return complete(q, w, VIRTIO_BLK_S_IOERR, 0);
    case BlkParse::kUnsupported:
      return complete(q, w, VIRTIO_BLK_S_UNSUPP, 1);
    case BlkParse::kBad:
      ctx_.errors.fetch_add(1, std::memory_order_relaxed);
      return complete(q, w, VIRTIO_BLK_S_IOERR, 1);
    case BlkParse::kOk:
      break;
  }
  switch (w.req.type) {
    case VIRTIO_BLK_T_GET_ID: {
      // The serial is the vdisk's name (at most 20 bytes, NUL-padded when shorter).
      const std::string& id = export_.config.vdisk;
      std::size_t pos = 0;
      for (const Segment& s : w.req.data) {
        for (std::uint32_t k = 0; k < s.len && pos < VIRTIO_BLK_ID_BYTES; ++k, ++pos) {
          s.ptr[k] = pos < id.size() ? static_cast<std::byte>(id[pos]) : std::byte{0};
        }
      }
      return complete(q, w, VIRTIO_BLK_S_OK, static_cast<std::uint32_t>(pos + 1));
    }
    case VIRTIO_BLK_T_IN:
      w.op = IoOp::kRead;
      break;
    case VIRTIO_BLK_T_OUT:
      w.op = IoOp::kWrite;
      break;
    case VIRTIO_BLK_T_FLUSH:
      w.op = IoOp::kFlush;
      break;
    case VIRTIO_BLK_T_DISCARD:
      w.op = IoOp::kDiscard;
      break;
    default:
      w.op = IoOp::kWriteZeroes;
      break;
  }
  if ((w.op == IoOp::kRead || w.op == IoOp::kWrite) && w.req.length == 0) {
    return complete(q, w, VIRTIO_BLK_S_OK, 1);
  }
  // As on the NBD backend path: flush and discard carry no guest data to attribute.
  w.tagged = ctx_.tagging && w.op != IoOp::kFlush && w.op != IoOp::kDiscard;
  // Blocks while every slot of the process is in flight: never submit untagged.
  if (ctx_.tagging) w.slot = SlotLease(SlotAllocator::instance());
  const std::uint16_t ioprio = w.tagged ? v2p::tag::ioprio_for_slot(w.slot.slot()) : 0;
  w.submit_ns = monotonic_ns();
  if (submit_ring(q, w)) return;
  workers_->run(
      ioprio, [this, &w] { return execute(w); },
      [this, &q, &w](int result) { finish(q, w, result); });
}

void BlkDevice::finish(Queue& q, Work& w, int result, bool notify) noexcept {
  publish(w, result);
  const bool ok = result >= 0;
  if (ok && w.op == IoOp::kRead) {
    ctx_.bytes_read.fetch_add(w.req.length, std::memory_order_relaxed);
  } else if (ok && w.op == IoOp::kWrite) {
    ctx_.bytes_written.fetch_add(w.req.length, std::memory_order_relaxed);
  } else if (!ok) {
    ctx_.errors.fetch_add(1, std::memory_order_relaxed);
  }
  const std::uint32_t written =
      ok && w.op == IoOp::kRead ? static_cast<std::uint32_t>(w.req.length) + 1 : 1;
  complete(q, w, ok ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR, written, notify);
}

int BlkDevice::execute(Work& w) noexcept {
  const IoTarget who{vm_,
                     export_.config.vdisk,
                     vm_id_,
                     vdisk_id_,
                     w.tagged ? v2p::tag::ioprio_for_slot(w.slot.slot()) : std::uint16_t{0},
                     w.req.offset};
  switch (w.op) {
    case IoOp::kFlush:
      return backend_->flush(who);
    case IoOp::kDiscard:
      return backend_->trim(who, w.req.offset, w.req.length);
    case IoOp::kWriteZeroes:
      return backend_->write_zeroes(who, w.req.offset, w.req.length,
                                    w.req.unmap ? MayPunch::kYes : MayPunch::kNo, Fua::kNo);
    default:
      break;
  }
  if (w.req.length > kMaxRequestBytes) return -EINVAL;
  const auto len = static_cast<std::size_t>(w.req.length);
  const auto& data = w.req.data;
  // One page-aligned buffer (the common case) goes straight between guest memory and the disk.
  if (data.size() == 1 && reinterpret_cast<std::uintptr_t>(data[0].ptr) % kBufferAlign == 0) {
    if (w.op == IoOp::kRead) return backend_->read(who, std::span(data[0].ptr, len), w.req.offset);
    return backend_->write(who, std::span<const std::byte>(data[0].ptr, len), w.req.offset,
                           Fua::kNo);
  }
  if (w.bounce_len < len) {
    std::free(w.bounce);
    w.bounce = nullptr;
    w.bounce_len = 0;
    void* p = nullptr;
    if (::posix_memalign(&p, kBufferAlign, len) != 0) return -ENOMEM;
    w.bounce = static_cast<std::byte*>(p);
    w.bounce_len = len;
  }
  if (w.op == IoOp::kWrite) {
    std::size_t pos = 0;
    for (const Segment& s : data) {
      std::memcpy(w.bounce + pos, s.ptr, s.len);
      pos += s.len;
    }
    return backend_->write(who, std::span<const std::byte>(w.bounce, len), w.req.offset, Fua::kNo);
  }
  const int rc = backend_->read(who, std::span(w.bounce, len), w.req.offset);
  if (rc < 0) return rc;
  std::size_t pos = 0;
  for (const Segment& s : data) {
    std::memcpy(s.ptr, w.bounce + pos, s.len);
    pos += s.len;
  }
  return rc;
}

void BlkDevice::complete(Queue& q, Work& w, std::uint8_t status, std::uint32_t written,
                         bool notify) noexcept {
  if (w.req.status != nullptr) *w.req.status = static_cast<std::byte>(status);
  w.slot.reset();
  const std::uint16_t head = w.head;
  // The guest may reuse the head as soon as it is in the used ring: w is free before that.
  w.nsegs = 0;
  w.req = {};
  {
    std::lock_guard lock(q.used_mu);
    q.vq.push_used(head, written);
    if (notify && q.vq.should_notify() && q.call >= 0) ::eventfd_write(q.call, 1);
  }
  {
    std::lock_guard lock(q.flight_mu);
    --q.inflight;
  }
  q.flight_cv.notify_all();
}

void BlkDevice::publish(const Work& w, int result) noexcept {
  if (ctx_.sink == nullptr) return;
  ContextRecord r;
  r.submit_ns = w.submit_ns;
  r.complete_ns = monotonic_ns();
  r.voffset = w.req.offset;
  r.length = w.op == IoOp::kFlush ? 0 : static_cast<std::uint32_t>(w.req.length);
  const auto& opaque = export_.opaque_pids;
  r.tgid = opaque.empty()       ? static_cast<std::uint32_t>(::getpid())
           : opaque.size() == 1 ? static_cast<std::uint32_t>(opaque.front())
                                : 0;
  r.vm_id = vm_id_;
  r.vdisk_id = vdisk_id_;
  r.result = result < 0 ? result : 0;
  r.slot = w.tagged && opaque.empty() ? w.slot.slot() : 0;
  r.op = static_cast<std::uint8_t>(w.op);
  r.seq = next_record_seq();
  ctx_.sink->publish(r);
}

}  // namespace v2p::vfilter::vhost_user
