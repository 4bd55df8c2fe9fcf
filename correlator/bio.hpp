// The part of a PhysEvent the joins keep while they wait: 32 bytes instead of 80.
#pragma once

#include <cstdint>

#include "v2p/records.hpp"

namespace v2p::correlator {

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
