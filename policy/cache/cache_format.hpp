// The cache file, byte by byte (little-endian, documented in docs/cache.md):
//
//   [0, 4096)                    superblock: geometry, clean-shutdown flag, next generation
//   [4096, 4096 + bitmap_bytes)  bitmap of the slots that held valid entries at clean shutdown
//   slot i at data_start + i * (4096 + block_bytes): a 4096-byte entry header, then the data
//
// An entry header names the physical origin block it copies (key), the VM that filled it, the
// data length, a generation and the CRC-32C of the data; the header has a CRC-32C of its own.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "policy/cache/cache_key.hpp"

namespace v2p::cache {

inline constexpr std::uint32_t kHeaderBytes = 4096;
inline constexpr std::uint32_t kFormatVersion = 1;
inline constexpr std::uint64_t kSuperMagic = 0x31484341'43503256ULL;  // "V2PCACH1"
inline constexpr std::uint64_t kEntryMagic = 0x31595254'4e453256ULL;  // "V2ENTRY1"
inline constexpr std::size_t kVmNameBytes = 64;

struct Geometry {
  std::uint32_t block_bytes = 0;
  std::uint32_t slots = 0;
  std::uint64_t bitmap_bytes = 0;  // a multiple of 4096
  std::uint64_t data_start = 0;
  [[nodiscard]] std::uint64_t slot_offset(CacheSlot s) const noexcept {
    return data_start + std::uint64_t{s.value()} * (kHeaderBytes + block_bytes);
  }
  [[nodiscard]] std::uint64_t file_bytes() const noexcept {
    return data_start + std::uint64_t{slots} * (kHeaderBytes + block_bytes);
  }
  auto operator<=>(const Geometry&) const = default;
};

// The most slots of `block_bytes` a file of `file_bytes` holds with its metadata. Throws
// v2p::Error when not even one fits or block_bytes is not a multiple of 4096.
Geometry plan_geometry(std::uint64_t file_bytes, std::uint32_t block_bytes);

struct Superblock {
  Geometry geometry;
  bool clean = false;
  std::uint64_t next_generation = 1;
  std::uint32_t bitmap_crc = 0;
};

struct EntryHeader {
  CacheKey key;
  CacheSlot slot;
  std::uint32_t length = 0;
  std::uint64_t generation = 0;
  std::uint32_t data_crc = 0;
  std::string vm;  // at most kVmNameBytes - 1 bytes are kept
};

// Each encoder fills exactly kHeaderBytes bytes; each decoder returns nullopt for anything it
// does not fully trust (magic, version, CRC, field ranges).
void encode_superblock(const Superblock& sb, std::span<std::byte, kHeaderBytes> out);
std::optional<Superblock> decode_superblock(std::span<const std::byte, kHeaderBytes> in);
void encode_entry(const EntryHeader& h, std::span<std::byte, kHeaderBytes> out);
std::optional<EntryHeader> decode_entry(std::span<const std::byte, kHeaderBytes> in,
                                        std::uint32_t block_bytes);

}  // namespace v2p::cache
