// CRC32C (Castagnoli) through ISA-L's crc32_iscsi, which picks the SSE4.2/PCLMUL variant at run
// time. Chunk payloads, chunk headers, metadata records and blocks all use it.
#pragma once

#include <isa-l/crc.h>

#include <cstdint>
#include <span>

namespace v2p::ec {

inline std::uint32_t crc32c(std::span<const std::uint8_t> bytes, std::uint32_t seed = 0) noexcept {
  // crc32_iscsi keeps the running value un-inverted; invert around it for the standard CRC32C.
  return ~crc32_iscsi(const_cast<unsigned char*>(bytes.data()), static_cast<int>(bytes.size()),
                      ~seed);
}

}  // namespace v2p::ec
