// A virtio-blk request (virtio 1.x, section 5.2.6) read out of a descriptor chain: the 16-byte
// header from the start of the readable buffers, the status byte from the end of the writable
// ones, the data in between. Pure: checks every length and sector against the disk before any
// I/O is issued.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "vfilter/vhost_user/virtqueue.hpp"

namespace v2p::vfilter::vhost_user {

inline constexpr std::uint32_t kSectorSize = 512;
inline constexpr std::uint32_t kMaxSegments = 256;  // per chain, including header and status
// What the config space advertises for DISCARD and WRITE_ZEROES (one range per request).
inline constexpr std::uint32_t kMaxRangeSectors = (1U << 30) / kSectorSize;

struct BlkRequest {
  std::uint32_t type = 0;
  std::uint64_t offset = 0;  // bytes
  std::uint64_t length = 0;  // bytes of data (IN/OUT/GET_ID) or of the range (DISCARD/ZEROES)
  bool unmap = false;        // WRITE_ZEROES may deallocate
  std::span<Segment> data;   // IN: writable; OUT: readable; trimmed of header and status
  std::byte* status = nullptr;
};

enum class BlkParse {
  kOk,
  kNoStatus,     // no writable byte for the status: the chain can only be returned
  kUnsupported,  // a type we do not serve (status UNSUPP)
  kBad           // malformed or out of range (status IOERR)
};

// Parses `segs` (modified in place: the header and status are cut off) for a disk of
// `capacity` bytes. With kOk, kUnsupported and kBad, `out.status` is valid.
BlkParse parse_blk_request(std::span<Segment> segs, std::uint64_t capacity, bool read_only,
                           BlkRequest& out) noexcept;

}  // namespace v2p::vfilter::vhost_user
