// The compact entries the V2P map stores: 32 bytes per extent in the forward (virtual) order
// and 16 bytes in the reverse (physical) index of its device. Devices are interned into a small
// table and confidences quantised to 16 bits so an extent with both entries stays under 64 bytes
// including the leaf overhead (docs/correlator.md, "Memory").
#pragma once

#include <compare>
#include <cstdint>

namespace v2p::correlator {

inline constexpr std::uint64_t kSector = 512;

constexpr std::uint64_t sectors_for(std::uint64_t bytes) noexcept {
  return (bytes + kSector - 1) / kSector;
}

// Bit fields keep the entry at 32 bytes: 48-bit lengths (256 TiB per extent) and sectors
// (128 PiB per device), a 16-bit device index and confidence, last_seen in milliseconds (40
// bits: 34 years of CLOCK_MONOTONIC) and a 24-bit generation that saturates.
struct FwdEntry {
  std::uint64_t voffset = 0;      // bytes in the vdisk
  std::uint64_t length : 48 = 0;  // bytes
  std::uint64_t conf_q : 16 = 0;  // confidence * 65535
  std::uint64_t sector : 48 = 0;  // 512-byte sector on devices[dev]
  std::uint64_t dev : 16 = 0;     // index into the map's device table
  std::uint64_t last_seen_ms : 40 = 0;
  std::uint64_t generation : 24 = 0;
  [[nodiscard]] std::uint64_t end() const noexcept { return voffset + length; }
};
static_assert(sizeof(FwdEntry) == 32);

inline constexpr std::uint64_t kMaxGeneration = (1u << 24) - 1;
inline constexpr std::uint64_t kNsPerMs = 1'000'000;

constexpr FwdEntry make_entry(std::uint64_t voffset, std::uint64_t length, std::uint64_t sector,
                              std::uint16_t dev, std::uint16_t conf_q, std::uint64_t seen_ns,
                              std::uint64_t generation) noexcept {
  FwdEntry e;
  e.voffset = voffset;
  e.length = length;
  e.conf_q = conf_q;
  e.sector = sector;
  e.dev = dev;
  e.last_seen_ms = seen_ns / kNsPerMs;
  e.generation = generation < kMaxGeneration ? generation : kMaxGeneration;
  return e;
}

// Keeps the newest observation time of a and b in a.
constexpr void touch(FwdEntry& a, const FwdEntry& b) noexcept {
  if (b.last_seen_ms > a.last_seen_ms) a.last_seen_ms = b.last_seen_ms;
}

constexpr std::uint64_t next_generation(std::uint64_t g) noexcept {
  return g < kMaxGeneration ? g + 1 : g;
}

struct FwdKey {
  std::uint64_t operator()(const FwdEntry& e) const noexcept { return e.voffset; }
};

// Reverse entries, one index per device: the sector (48 bits: 128 PiB) and the owning vdisk's
// index in the map's vdisk table (16 bits) packed into one sort key, plus the voffset of the
// forward extent they point back to. The pair is the key because stale data could briefly name
// one sector twice.
inline constexpr unsigned kVdiskBits = 16;
inline constexpr std::uint64_t kVdiskMask = (1u << kVdiskBits) - 1;

struct RevEntry {
  std::uint64_t key = 0;  // sector << kVdiskBits | vdisk index
  std::uint64_t voffset = 0;
  [[nodiscard]] std::uint64_t sector() const noexcept { return key >> kVdiskBits; }
  [[nodiscard]] std::uint16_t vdisk() const noexcept {
    return static_cast<std::uint16_t>(key & kVdiskMask);
  }
  constexpr auto operator<=>(const RevEntry&) const = default;
};
static_assert(sizeof(RevEntry) == 16);

constexpr RevEntry rev_entry(std::uint64_t sector, std::uint16_t vdisk,
                             std::uint64_t voffset) noexcept {
  return {(sector << kVdiskBits) | vdisk, voffset};
}

struct RevKey {
  RevEntry operator()(const RevEntry& e) const noexcept { return e; }
};

constexpr std::uint16_t quantize_confidence(float c) noexcept {
  if (!(c > 0)) return 0;
  if (c >= 1) return 65535;
  return static_cast<std::uint16_t>(c * 65535.0f + 0.5f);
}

constexpr float confidence_of(std::uint16_t q) noexcept {
  return q == 65535 ? 1.0f : static_cast<float>(q) / 65535.0f;
}

}  // namespace v2p::correlator
