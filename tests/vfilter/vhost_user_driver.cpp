#include "vhost_user_driver.hpp"

#include <linux/virtio_blk.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstring>
#include <stdexcept>

namespace v2p::vfilter::testing {

using namespace vhost_user;

namespace {

constexpr std::size_t kPage = 4096;
constexpr std::size_t round_up(std::size_t n) {
  return (n + kPage - 1) / kPage * kPage;
}

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error("vhost-user driver: " + what);
}

template <class T>
std::span<const std::byte> as_bytes_of(const T& v) {
  return {reinterpret_cast<const std::byte*>(&v), sizeof v};
}

}  // namespace

// One queue's rings and request slots inside the shared memory.
struct VhostUserDriver::Ring {
  unsigned num = 0;
  vring_desc* desc = nullptr;
  vring_avail* avail = nullptr;
  vring_used* used = nullptr;
  std::byte* slots = nullptr;  // per slot: a page for header/status/range, then the data
  std::uint16_t avail_idx = 0;
  std::uint16_t used_idx = 0;
  int kick = -1;
  int call = -1;
};

VhostUserDriver::VhostUserDriver(const std::filesystem::path& socket, Options options)
    : options_(options) {
  sock_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket.c_str(), sizeof addr.sun_path - 1);
  if (sock_ < 0 || ::connect(sock_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    if (sock_ >= 0) ::close(sock_);
    fail("cannot connect to " + socket.string());
  }
  try {
    setup();
  } catch (...) {
    this->~VhostUserDriver();
    throw;
  }
}

VhostUserDriver::~VhostUserDriver() {
  if (sock_ >= 0) ::close(sock_);
  sock_ = -1;
  for (Ring* r : rings_) {
    if (r->kick >= 0) ::close(r->kick);
    if (r->call >= 0) ::close(r->call);
    delete r;
  }
  rings_.clear();
  if (mem_ != nullptr) ::munmap(mem_, mem_len_);
  mem_ = nullptr;
  if (memfd_ >= 0) ::close(memfd_);
  memfd_ = -1;
}

std::vector<std::byte> VhostUserDriver::message(std::uint32_t request,
                                                std::span<const std::byte> payload, bool want_reply,
                                                std::span<const int> fds) {
  const std::uint32_t hdr[3] = {request, kVersion | (want_reply ? 0 : kFlagNeedReply),
                                static_cast<std::uint32_t>(payload.size())};
  std::vector<std::byte> buf(sizeof hdr + payload.size());
  std::memcpy(buf.data(), hdr, sizeof hdr);
  if (!payload.empty()) std::memcpy(buf.data() + sizeof hdr, payload.data(), payload.size());
  iovec iov{buf.data(), buf.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  if (::sendmsg(sock_, &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(buf.size())) {
    fail("send failed for request " + std::to_string(request));
  }
  // Every message gets an answer: its own reply, or the REPLY_ACK we asked for.
  std::uint32_t rh[3] = {};
  const auto read_all = [&](void* p, std::size_t n) {
    auto* b = static_cast<std::byte*>(p);
    while (n > 0) {
      const ssize_t r = ::recv(sock_, b, n, 0);
      if (r <= 0) fail("connection closed waiting for reply to " + std::to_string(request));
      b += r;
      n -= static_cast<std::size_t>(r);
    }
  };
  read_all(rh, sizeof rh);
  if (rh[0] != request || !(rh[1] & kFlagReply) || rh[2] > kMaxPayload) fail("bad reply");
  std::vector<std::byte> reply(rh[2]);
  read_all(reply.data(), reply.size());
  if (!want_reply) {
    std::uint64_t status = 1;
    if (reply.size() == 8) std::memcpy(&status, reply.data(), 8);
    if (status != 0) fail("request " + std::to_string(request) + " was refused");
  }
  return reply;
}

void VhostUserDriver::setup() {
  const auto u64 = [](const std::vector<std::byte>& r) {
    std::uint64_t v = 0;
    if (r.size() != 8) fail("reply is not a u64");
    std::memcpy(&v, r.data(), 8);
    return v;
  };
  const auto get = [&](std::uint32_t req) { return u64(message(req, {}, true)); };
  features_ = get(kGetFeatures);
  if (!(features_ & kFProtocolFeatures)) fail("no VHOST_USER_F_PROTOCOL_FEATURES");
  const std::uint64_t proto = get(kGetProtocolFeatures);
  const std::uint64_t want = kProtoMq | kProtoReplyAck | kProtoConfig;
  if ((proto & want) != want) fail("missing protocol features");
  // SET_PROTOCOL_FEATURES itself cannot be acknowledged yet: send it without asking.
  {
    const std::uint32_t hdr[3] = {kSetProtocolFeatures, kVersion, 8};
    std::byte buf[20];
    std::memcpy(buf, hdr, 12);
    std::memcpy(buf + 12, &want, 8);
    if (::send(sock_, buf, sizeof buf, MSG_NOSIGNAL) != sizeof buf) fail("send failed");
  }
  message(kSetOwner, {}, false);
  if (get(kGetQueueNum) < options_.queues) fail("the device offers fewer queues");
  // The config space as QEMU asks for it (through the write-zeroes fields): servers built on
  // older headers refuse larger requests.
  ConfigHeader ch{0, offsetof(virtio_blk_config, write_zeroes_may_unmap) + 4, 0};
  std::vector<std::byte> req(sizeof ch + ch.size);
  std::memcpy(req.data(), &ch, sizeof ch);
  const auto cfg = message(kGetConfig, req, true);
  // Older servers know a shorter config space; the capacity comes first in every version.
  if (cfg.size() < sizeof ch + 8 || cfg.size() > req.size()) {
    fail("bad config reply of " + std::to_string(cfg.size()) + " bytes");
  }
  virtio_blk_config c{};
  std::memcpy(&c, cfg.data() + sizeof ch, cfg.size() - sizeof ch);
  capacity_ = c.capacity;
  const std::uint64_t f = features_;
  message(kSetFeatures, as_bytes_of(f), false);

  // Guest memory: per queue its rings, then its request slots.
  const unsigned n = options_.queue_size;
  slots_ = std::min(n / 3, 64U);
  const std::size_t ring_bytes = round_up(16 * n) + round_up(6 + 2 * n) + round_up(6 + 8 * n);
  const std::size_t slot_bytes = kPage + round_up(options_.slot_bytes);
  const std::size_t per_queue = ring_bytes + slots_ * slot_bytes;
  mem_len_ = per_queue * options_.queues;
  memfd_ = ::memfd_create("v2p-vhost-driver", MFD_CLOEXEC);
  if (memfd_ < 0 || ::ftruncate(memfd_, static_cast<off_t>(mem_len_)) != 0) fail("memfd");
  void* m = ::mmap(nullptr, mem_len_, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_, 0);
  if (m == MAP_FAILED) fail("mmap");
  mem_ = static_cast<std::byte*>(m);
  const MemRegion region{0, mem_len_, reinterpret_cast<std::uint64_t>(mem_), 0};
  std::vector<std::byte> table(8 + sizeof region);
  const std::uint32_t nregions = 1;
  std::memcpy(table.data(), &nregions, 4);
  std::memcpy(table.data() + 8, &region, sizeof region);
  message(kSetMemTable, table, false, std::span(&memfd_, 1));

  for (unsigned q = 0; q < options_.queues; ++q) {
    auto* r = new Ring;
    rings_.push_back(r);
    std::byte* base = mem_ + q * per_queue;
    r->num = n;
    r->desc = reinterpret_cast<vring_desc*>(base);
    r->avail = reinterpret_cast<vring_avail*>(base + round_up(16 * n));
    r->used = reinterpret_cast<vring_used*>(base + round_up(16 * n) + round_up(6 + 2 * n));
    r->slots = base + ring_bytes;
    r->kick = ::eventfd(0, EFD_CLOEXEC);
    r->call = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    message(kSetVringNum, as_bytes_of(VringState{q, n}), false);
    message(kSetVringBase, as_bytes_of(VringState{q, 0}), false);
    const VringAddr a{q,
                      0,
                      reinterpret_cast<std::uint64_t>(r->desc),
                      reinterpret_cast<std::uint64_t>(r->used),
                      reinterpret_cast<std::uint64_t>(r->avail),
                      0};
    message(kSetVringAddr, as_bytes_of(a), false);
    const std::uint64_t idx = q;
    message(kSetVringKick, as_bytes_of(idx), false, std::span(&r->kick, 1));
    message(kSetVringCall, as_bytes_of(idx), false, std::span(&r->call, 1));
    message(kSetVringEnable, as_bytes_of(VringState{q, 1}), false);
  }
}

std::uint64_t VhostUserDriver::gpa_of(const std::byte* p) const {
  return static_cast<std::uint64_t>(p - mem_);
}

std::byte* VhostUserDriver::slot_data(unsigned q, std::uint32_t slot) {
  return rings_.at(q)->slots + slot * (kPage + round_up(options_.slot_bytes)) + kPage;
}

vring_desc* VhostUserDriver::descriptors(unsigned q) {
  return rings_.at(q)->desc;
}

void VhostUserDriver::publish_head(unsigned q, std::uint16_t head) {
  Ring& r = *rings_.at(q);
  std::atomic_ref(r.avail->ring[r.avail_idx % r.num]).store(head, std::memory_order_relaxed);
  ++r.avail_idx;
  std::atomic_ref(r.avail->idx).store(r.avail_idx, std::memory_order_release);
}

void VhostUserDriver::kick(unsigned q) {
  ::eventfd_write(rings_.at(q)->kick, 1);
}

std::uint8_t VhostUserDriver::status(unsigned q, std::uint32_t slot) const {
  return std::to_integer<std::uint8_t>(
      rings_.at(q)->slots[slot * (kPage + round_up(options_.slot_bytes)) + 16]);
}

void VhostUserDriver::submit(unsigned q, std::uint32_t slot, bool write, std::uint64_t offset,
                             std::uint32_t len, bool do_kick) {
  Ring& r = *rings_.at(q);
  std::byte* page = r.slots + slot * (kPage + round_up(options_.slot_bytes));
  virtio_blk_outhdr h{};
  h.type = write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
  h.sector = offset / 512;
  std::memcpy(page, &h, sizeof h);
  page[16] = std::byte{0xff};
  const std::uint16_t d = static_cast<std::uint16_t>(slot * 3);
  r.desc[d] = {gpa_of(page), 16, VRING_DESC_F_NEXT, static_cast<std::uint16_t>(d + 1)};
  r.desc[d + 1] = {gpa_of(page + kPage), len,
                   static_cast<std::uint16_t>(VRING_DESC_F_NEXT | (write ? 0 : VRING_DESC_F_WRITE)),
                   static_cast<std::uint16_t>(d + 2)};
  r.desc[d + 2] = {gpa_of(page + 16), 1, VRING_DESC_F_WRITE, 0};
  publish_head(q, d);
  if (do_kick) kick(q);
}

std::size_t VhostUserDriver::reap(unsigned q, std::vector<std::uint32_t>& done, int timeout_ms) {
  Ring& r = *rings_.at(q);
  std::size_t n = 0;
  for (;;) {
    const std::uint16_t used = std::atomic_ref(r.used->idx).load(std::memory_order_acquire);
    while (r.used_idx != used) {
      const auto id =
          std::atomic_ref(r.used->ring[r.used_idx % r.num].id).load(std::memory_order_relaxed);
      done.push_back(id / 3);
      ++r.used_idx;
      ++n;
    }
    if (n > 0 || timeout_ms == 0) return n;
    pollfd p{r.call, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return n;
    eventfd_t v = 0;
    ::eventfd_read(r.call, &v);
  }
}

std::uint8_t VhostUserDriver::sync(unsigned q, std::uint32_t type, std::uint64_t sector,
                                   std::span<const std::byte> out_data,
                                   std::span<std::byte> in_data) {
  Ring& r = *rings_.at(q);
  if (out_data.size() > options_.slot_bytes || in_data.size() > options_.slot_bytes) {
    fail("request larger than a slot");
  }
  std::byte* page = r.slots;  // slot 0
  std::byte* data = page + kPage;
  virtio_blk_outhdr h{};
  h.type = type;
  h.sector = sector;
  std::memcpy(page, &h, sizeof h);
  page[16] = std::byte{0xff};
  std::uint16_t d = 0;
  r.desc[d] = {gpa_of(page), 16, VRING_DESC_F_NEXT, 1};
  if (!out_data.empty()) {
    std::memcpy(data, out_data.data(), out_data.size());
    r.desc[++d] = {gpa_of(data), static_cast<std::uint32_t>(out_data.size()), VRING_DESC_F_NEXT,
                   static_cast<std::uint16_t>(d + 1)};
  }
  if (!in_data.empty()) {
    r.desc[++d] = {gpa_of(data), static_cast<std::uint32_t>(in_data.size()),
                   VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, static_cast<std::uint16_t>(d + 1)};
  }
  r.desc[++d] = {gpa_of(page + 16), 1, VRING_DESC_F_WRITE, 0};
  publish_head(q, 0);
  kick(q);
  std::vector<std::uint32_t> done;
  while (done.empty()) {
    if (reap(q, done, 30000) == 0) fail("no completion within 30 s");
  }
  if (!in_data.empty()) std::memcpy(in_data.data(), data, in_data.size());
  return std::to_integer<std::uint8_t>(page[16]);
}

std::uint8_t VhostUserDriver::read(std::uint64_t offset, std::span<std::byte> out, unsigned q) {
  return sync(q, VIRTIO_BLK_T_IN, offset / 512, {}, out);
}
std::uint8_t VhostUserDriver::write(std::uint64_t offset, std::span<const std::byte> data,
                                    unsigned q) {
  return sync(q, VIRTIO_BLK_T_OUT, offset / 512, data, {});
}
std::uint8_t VhostUserDriver::flush(unsigned q) {
  return sync(q, VIRTIO_BLK_T_FLUSH, 0, {}, {});
}
std::uint8_t VhostUserDriver::discard(std::uint64_t offset, std::uint64_t length, unsigned q) {
  const virtio_blk_discard_write_zeroes range{offset / 512,
                                              static_cast<std::uint32_t>(length / 512), 0};
  return sync(q, VIRTIO_BLK_T_DISCARD, 0, as_bytes_of(range), {});
}
std::uint8_t VhostUserDriver::write_zeroes(std::uint64_t offset, std::uint64_t length, bool unmap,
                                           unsigned q) {
  const virtio_blk_discard_write_zeroes range{offset / 512,
                                              static_cast<std::uint32_t>(length / 512),
                                              unmap ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0U};
  return sync(q, VIRTIO_BLK_T_WRITE_ZEROES, 0, as_bytes_of(range), {});
}
std::uint8_t VhostUserDriver::get_id(std::string& id, unsigned q) {
  std::byte buf[VIRTIO_BLK_ID_BYTES] = {};
  const auto s = sync(q, VIRTIO_BLK_T_GET_ID, 0, {}, buf);
  id.assign(reinterpret_cast<const char*>(buf),
            strnlen(reinterpret_cast<const char*>(buf), sizeof buf));
  return s;
}
std::uint8_t VhostUserDriver::raw_type(std::uint32_t type, unsigned q) {
  return sync(q, type, 0, {}, {});
}

}  // namespace v2p::vfilter::testing
