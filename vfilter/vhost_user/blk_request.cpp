#include "vfilter/vhost_user/blk_request.hpp"

#include <linux/virtio_blk.h>

#include <cstring>

namespace v2p::vfilter::vhost_user {

namespace {

// Copies `n` bytes from the front of the readable segments into `dst` and drops them from
// `segs`; false when the readable part is shorter.
bool take_front(std::span<Segment>& segs, std::byte* dst, std::size_t n) noexcept {
  while (n > 0) {
    if (segs.empty() || segs.front().writable) return false;
    Segment& s = segs.front();
    const std::size_t take = std::min<std::size_t>(n, s.len);
    std::memcpy(dst, s.ptr, take);
    dst += take;
    n -= take;
    s.ptr += take;
    s.len -= static_cast<std::uint32_t>(take);
    if (s.len == 0) segs = segs.subspan(1);
  }
  return true;
}

bool in_range(std::uint64_t offset, std::uint64_t length, std::uint64_t capacity) noexcept {
  return offset <= capacity && length <= capacity - offset;
}

}  // namespace

BlkParse parse_blk_request(std::span<Segment> segs, std::uint64_t capacity, bool read_only,
                           BlkRequest& out) noexcept {
  out = {};
  if (segs.empty() || !segs.back().writable) return BlkParse::kNoStatus;
  Segment& last = segs.back();
  out.status = last.ptr + last.len - 1;
  if (--last.len == 0) segs = segs.first(segs.size() - 1);
  virtio_blk_outhdr hdr{};
  if (!take_front(segs, reinterpret_cast<std::byte*>(&hdr), sizeof hdr)) return BlkParse::kBad;
  out.type = hdr.type;
  std::size_t readable = 0;
  std::uint64_t readable_bytes = 0, writable_bytes = 0;
  for (const Segment& s : segs) {
    if (s.writable) {
      writable_bytes += s.len;
    } else {
      ++readable;
      readable_bytes += s.len;
    }
  }
  switch (hdr.type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT: {
      const bool in = hdr.type == VIRTIO_BLK_T_IN;
      // Reads take only writable buffers, writes only readable ones.
      if (in ? readable != 0 : readable != segs.size()) return BlkParse::kBad;
      out.length = in ? writable_bytes : readable_bytes;
      if (out.length % kSectorSize != 0 || hdr.sector > capacity / kSectorSize) {
        return BlkParse::kBad;
      }
      out.offset = hdr.sector * kSectorSize;
      if (!in_range(out.offset, out.length, capacity)) return BlkParse::kBad;
      if (!in && read_only) return BlkParse::kBad;
      out.data = segs;
      return BlkParse::kOk;
    }
    case VIRTIO_BLK_T_FLUSH:
      return BlkParse::kOk;
    case VIRTIO_BLK_T_GET_ID:
      if (readable != 0) return BlkParse::kBad;
      out.data = segs;
      out.length = writable_bytes;
      return BlkParse::kOk;
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES: {
      // One range per request (max_discard_seg = max_write_zeroes_seg = 1).
      virtio_blk_discard_write_zeroes range{};
      if (readable_bytes != sizeof range || writable_bytes != 0) return BlkParse::kBad;
      take_front(segs, reinterpret_cast<std::byte*>(&range), sizeof range);
      const bool zeroes = hdr.type == VIRTIO_BLK_T_WRITE_ZEROES;
      // Flags other than unmap (on WRITE_ZEROES only) are reserved.
      const std::uint32_t allowed = zeroes ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0;
      if ((range.flags & ~allowed) != 0 || range.num_sectors == 0 ||
          range.num_sectors > kMaxRangeSectors || range.sector > capacity / kSectorSize) {
        return BlkParse::kBad;
      }
      out.offset = range.sector * kSectorSize;
      out.length = std::uint64_t{range.num_sectors} * kSectorSize;
      out.unmap = (range.flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) != 0;
      if (!in_range(out.offset, out.length, capacity) || read_only) return BlkParse::kBad;
      return BlkParse::kOk;
    }
    default:
      return BlkParse::kUnsupported;
  }
}

}  // namespace v2p::vfilter::vhost_user
