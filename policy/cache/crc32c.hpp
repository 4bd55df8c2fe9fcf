// CRC-32C (Castagnoli), the checksum of cache block headers and data. crc32c() dispatches at run
// time to the SSE4.2 instruction when the CPU has it; crc32c_base() is the table-driven reference
// twin the tests check it against.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace v2p::cache {

// Continues a CRC: crc32c(b, crc32c(a)) == crc32c(a ++ b). Start with 0.
std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept;
std::uint32_t crc32c_base(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept;

}  // namespace v2p::cache
