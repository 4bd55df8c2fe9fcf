// CRC-32C (Castagnoli), the checksum of the tier journal's records and of migrated extents.
// Software, byte at a time from a table: records are 64 bytes and extents move at a rate limit
// far below what this computes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace v2p::tier {

// Continues a CRC: pass the previous result as `crc` (0 to start).
[[nodiscard]] std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept;

}  // namespace v2p::tier
