// One chunk file = a 64-byte header + the chunk payload. The header names the chunk completely
// (pool, container, index, k+m, seal nonce), so a file in the wrong place or from an earlier,
// crashed write of the same container id is recognised and never used.
//
//   off size  field
//     0    8  magic "V2PECHK\0"
//     8    2  version (1)
//    10    2  header length (64)
//    12    1  k            13  1  m          14  1  chunk index   15  1  reserved (0)
//    16    8  pool id
//    24    8  container id
//    32    8  seal nonce (random per container write; also in the metadata record)
//    40    4  payload length
//    44    4  CRC32C of the payload
//    48    8  created, ns since the epoch
//    56    4  reserved (0)
//    60    4  CRC32C of bytes 0..59
// All integers little-endian.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ec/result.hpp"

namespace v2p::ec {

inline constexpr std::size_t kChunkHeaderSize = 64;
inline constexpr std::uint16_t kChunkVersion = 1;
// Largest payload a header may announce: a 16 MiB container split into one data chunk.
inline constexpr std::uint32_t kMaxChunkPayload = 16U << 20;

struct ChunkHeader {
  std::uint8_t k = 0;
  std::uint8_t m = 0;
  std::uint8_t index = 0;
  std::uint64_t pool_id = 0;
  std::uint64_t container_id = 0;
  std::uint64_t nonce = 0;
  std::uint32_t payload_len = 0;
  std::uint32_t payload_crc = 0;
  std::uint64_t created_ns = 0;
  bool operator==(const ChunkHeader&) const = default;
};

[[nodiscard]] std::vector<std::uint8_t> encode_chunk_header(const ChunkHeader& h);

// Checks magic, version, sizes, k+m limits and the header's own CRC.
Result<ChunkHeader> parse_chunk_header(std::span<const std::uint8_t> bytes);

}  // namespace v2p::ec
