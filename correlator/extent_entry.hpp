// The compact entries the V2P map stores: 40 bytes per extent in the forward (virtual) order
// and 16 bytes in the reverse (physical) order of its device. Devices are interned into a small
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

struct FwdEntry {
  std::uint64_t voffset = 0;  // bytes in the vdisk
  std::uint64_t length = 0;   // bytes
  std::uint64_t sector = 0;   // 512-byte sector on devices[dev]
  std::uint64_t last_seen_ns = 0;
  std::uint32_t generation = 0;
  std::uint16_t dev = 0;     // index into the map's device table
  std::uint16_t conf_q = 0;  // confidence * 65535
  [[nodiscard]] std::uint64_t end() const noexcept { return voffset + length; }
};
static_assert(sizeof(FwdEntry) == 40);

struct FwdKey {
  std::uint64_t operator()(const FwdEntry& e) const noexcept { return e.voffset; }
};

// Reverse entries are kept per (device, vdisk), so they only need the sector and the voffset of
// the forward extent they point back to; the pair is the key because stale data could briefly
// name one sector twice.
struct RevEntry {
  std::uint64_t sector = 0;
  std::uint64_t voffset = 0;
  constexpr auto operator<=>(const RevEntry&) const = default;
};
static_assert(sizeof(RevEntry) == 16);

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
