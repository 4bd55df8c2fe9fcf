// Two attack surfaces of the vhost-user-blk export, chosen by the first input byte:
//  - guest rings: the rest of the input is guest memory holding a descriptor table, an avail
//    ring and buffers; chains that loop, point outside memory, overflow or mix directions are
//    walked and parsed as virtio-blk requests. Invariant besides memory safety: every buffer
//    handed out lies inside guest memory, and no parsed request leaves the disk.
//  - frontend messages: the rest is a stream of vhost-user messages fed to a device (no fds,
//    as a hostile frontend might send them).
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "vfilter/file_backend.hpp"
#include "vfilter/server_context.hpp"
#include "vfilter/vhost_user/blk_device.hpp"
#include "vfilter/vhost_user/blk_request.hpp"
#include "vfilter/vhost_user/guest_memory.hpp"
#include "vfilter/vhost_user/virtqueue.hpp"

using namespace v2p::vfilter;
using namespace v2p::vfilter::vhost_user;

namespace {

constexpr std::uint64_t kCapacity = 1 << 20;

void fuzz_rings(std::span<const std::byte> in) {
  if (in.size() < 2) return;
  const std::uint32_t num = 1U << (std::to_integer<unsigned>(in[0]) % 9);  // 1..256
  std::vector<std::byte> memory(64 << 10);
  std::memcpy(memory.data(), in.data() + 1, std::min(memory.size(), in.size() - 1));
  GuestMemory mem;
  constexpr std::uint64_t kGpa = 0x10000;
  mem.add_buffer(kGpa, kGpa, memory);
  // Rings at fixed places, as a driver lays them out; the guest controls their contents.
  SplitQueue q;
  if (!q.configure(mem, num, kGpa, kGpa + 16 * 256, kGpa + 16 * 256 + 1024)) std::abort();
  std::vector<Segment> segs(kMaxSegments);
  const std::byte* lo = memory.data();
  const std::byte* hi = memory.data() + memory.size();
  for (int i = 0; i < 64; ++i) {
    std::uint16_t head = 0;
    std::size_t n = 0;
    const auto r = q.pop(mem, head, segs, n);
    if (r == SplitQueue::Pop::kEmpty || r == SplitQueue::Pop::kBroken) break;
    if (head >= num || n > segs.size()) std::abort();
    for (std::size_t k = 0; k < n; ++k) {
      if (segs[k].ptr < lo || segs[k].len > static_cast<std::size_t>(hi - segs[k].ptr)) {
        std::abort();
      }
    }
    if (r == SplitQueue::Pop::kOk) {
      BlkRequest req;
      if (parse_blk_request(std::span(segs.data(), n), kCapacity, false, req) == BlkParse::kOk &&
          (req.offset > kCapacity || req.length > kCapacity - req.offset) && req.type != 4 &&
          req.type != 8) {
        std::abort();
      }
    }
    q.push_used(head, 0);
  }
}

struct Device {
  Device() {
    char path[] = "/tmp/v2p-vhost-fuzz-XXXXXX";
    const int fd = ::mkstemp(path);
    if (fd < 0 || ::ftruncate(fd, kCapacity) != 0) std::abort();
    ::close(fd);
    backend = std::make_shared<FileBackend>(path, false, false);
    ::unlink(path);
    ExportRuntime rt;
    rt.config.vdisk = "d";
    rt.config.vm = "vm";
    rt.info.size = kCapacity;
    ctx.exports.push_back(std::move(rt));
  }
  ServerContext ctx{nullptr};
  std::shared_ptr<BlockBackend> backend;
};

void fuzz_messages(std::span<const std::byte> in) {
  static Device d;
  BlkDevice dev(d.ctx, d.ctx.exports[0], d.backend, "vm", BlkDeviceOptions{2, 1});
  std::size_t pos = 0;
  while (in.size() - pos >= kHeaderSize) {
    std::uint32_t h[3];
    std::memcpy(h, in.data() + pos, sizeof h);
    pos += sizeof h;
    const std::size_t len = std::min<std::size_t>(h[2] % 512, in.size() - pos);
    std::vector<int> fds;
    const auto reply = dev.handle(h[0], h[1], in.subspan(pos, len), fds);
    pos += len;
    if (!fds.empty() || reply.payload.size() > kMaxPayload) std::abort();
    if (reply.close) break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const auto in = std::span(reinterpret_cast<const std::byte*>(data + 1), size - 1);
  if (data[0] & 1) {
    fuzz_rings(in);
  } else {
    fuzz_messages(in);
  }
  return 0;
}
