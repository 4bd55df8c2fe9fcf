// CRC-32C (Castagnoli): the one checksum of every on-disk format v2p writes (flash cache entries,
// the tier journal, erasure-coded chunks and their metadata log). ISA-L's crc32_iscsi picks the
// SSE4.2/PCLMUL variant at run time.
#pragma once

#include <isa-l/crc.h>

#include <cstddef>
#include <cstdint>
#include <span>

namespace v2p {

// Continues a CRC: crc32c(b, crc32c(a)) == crc32c(a ++ b). Start with 0.
inline std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept {
  // crc32_iscsi keeps the running value un-inverted; invert around it for the standard CRC-32C.
  return ~crc32_iscsi(reinterpret_cast<unsigned char*>(const_cast<std::byte*>(data.data())),
                      static_cast<int>(data.size()), ~crc);
}

inline std::uint32_t crc32c(std::span<const std::uint8_t> data, std::uint32_t crc = 0) noexcept {
  return crc32c(std::as_bytes(data), crc);
}

}  // namespace v2p
