// The part of a PhysEvent the joins keep while they wait: 32 bytes instead of 80.
#pragma once

#include <cstdint>

#include "v2p/records.hpp"

namespace v2p::correlator {

// REQ_META in PhysEvent::cmd_flags (bio->bi_opf): bit 12 (__REQ_META) on the kernel this was
// measured on, 6.18 (docs/formats.md lists the positions; they follow enum req_flag_bits and
// move between kernel versions, so this is the one place to change). File systems set it on
// their own metadata I/O: btrfs tree blocks and their DUP copies, the superblock. File data is
// never written with it.
inline constexpr unsigned kReqMetaBit = 12;
inline constexpr std::uint32_t kReqMeta = 1u << kReqMetaBit;

// A bio that can never be a request's data: file-system metadata (REQ_META), or an empty bio
// (a cache flush, REQ_PREFLUSH with no payload). Such bios may carry a request's tag when the
// submitting thread's own ioprio is the tag (the synchronous CoW write path, docs/design.md).
constexpr bool is_metadata(const PhysEvent& e) noexcept {
  return (e.cmd_flags & kReqMeta) != 0 || e.bytes == 0;
}

struct Bio {
  std::uint64_t ts_ns = 0;
  std::uint64_t sector = 0;
  std::uint32_t bytes = 0;
  std::uint32_t dev = 0;  // kernel encoding
  IoOp op = IoOp::kOther;

  static Bio of(const PhysEvent& e) noexcept {
    return {e.ts_ns, e.sector, e.bytes, e.dev, static_cast<IoOp>(e.op)};
  }
};

// Does a bio carry data of the kind a request of op `request_op` moves?
constexpr bool carries_data_of(const Bio& b, IoOp request_op) noexcept {
  return b.bytes > 0 && b.op == request_op &&
         (request_op == IoOp::kRead || request_op == IoOp::kWrite);
}

// (tgid, slot) packed into one hash key.
constexpr std::uint64_t slot_key(std::uint32_t tgid, std::uint16_t slot) noexcept {
  return (std::uint64_t{tgid} << 16) | slot;
}

}  // namespace v2p::correlator
