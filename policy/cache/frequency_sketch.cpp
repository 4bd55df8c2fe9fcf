#include "policy/cache/frequency_sketch.hpp"

#include <algorithm>
#include <bit>

namespace v2p::cache {

FrequencySketch::FrequencySketch(std::uint64_t expected_items) {
  const std::uint64_t width = std::bit_ceil(std::max<std::uint64_t>(1024, expected_items * 4));
  table_.assign(width * 4, 0);
  width_mask_ = width - 1;
  sample_ = std::max<std::uint64_t>(64, expected_items * 10);
}

std::size_t FrequencySketch::index(std::uint64_t hash, unsigned row) const noexcept {
  // Row seeds: odd constants; each row sees a different rotation and multiplier.
  static constexpr std::uint64_t kSeeds[4] = {0x9e3779b97f4a7c15ULL, 0xc2b2ae3d27d4eb4fULL,
                                              0x165667b19e3779f9ULL, 0xd6e8feb86659fd93ULL};
  std::uint64_t h = (hash ^ (hash >> (17 + row * 7))) * kSeeds[row];
  h ^= h >> 32;
  return row * (width_mask_ + 1) + (h & width_mask_);
}

void FrequencySketch::increment(std::uint64_t hash) noexcept {
  bool added = false;
  for (unsigned r = 0; r < 4; ++r) {
    auto& c = table_[index(hash, r)];
    if (c < 255) {
      ++c;
      added = true;
    }
  }
  if (added && ++additions_ >= sample_) {
    for (auto& c : table_) c = static_cast<std::uint8_t>(c >> 1);
    additions_ /= 2;
    ++resets_;
  }
}

unsigned FrequencySketch::estimate(std::uint64_t hash) const noexcept {
  unsigned m = 255;
  for (unsigned r = 0; r < 4; ++r) m = std::min<unsigned>(m, table_[index(hash, r)]);
  return m;
}

}  // namespace v2p::cache
