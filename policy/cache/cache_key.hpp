// The address spaces of the cache: where origin data physically lives (CacheKey: a device and a
// 512-byte sector on it, from the image's FIEMAP layout) and where the cache keeps a copy
// (CacheSlot: an index into the cache file). They never convert into each other.
#pragma once

#include <compare>
#include <cstdint>

#include "v2p/types.hpp"

namespace v2p::cache {

struct CacheKey {
  DeviceId device;
  PhysicalSector sector;
  constexpr auto operator<=>(const CacheKey&) const = default;
};

using CacheSlot = Strong<struct CacheSlotTag, std::uint32_t>;

// 64-bit mix of a key (splitmix64 finaliser), for the frequency sketch.
constexpr std::uint64_t key_hash(const CacheKey& k) noexcept {
  std::uint64_t x = (std::uint64_t{k.device.kernel()} << 40) ^ k.sector.value();
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace v2p::cache
