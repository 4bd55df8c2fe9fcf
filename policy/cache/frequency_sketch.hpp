// Approximate access counts of cache keys in a fixed amount of memory: a count-min sketch with
// four rows of 8-bit saturating counters, all halved every `sample` increments so old popularity
// fades (TinyLFU's reset). The admission filter asks it how often a missed block was wanted.
#pragma once

#include <cstdint>
#include <vector>

namespace v2p::cache {

class FrequencySketch {
 public:
  // `expected_items`: about how many distinct keys matter (the cache's slot count).
  explicit FrequencySketch(std::uint64_t expected_items);
  void increment(std::uint64_t hash) noexcept;
  [[nodiscard]] unsigned estimate(std::uint64_t hash) const noexcept;
  [[nodiscard]] std::uint64_t resets() const noexcept { return resets_; }

 private:
  [[nodiscard]] std::size_t index(std::uint64_t hash, unsigned row) const noexcept;
  std::vector<std::uint8_t> table_;  // 4 rows of width_ counters
  std::uint64_t width_mask_ = 0;
  std::uint64_t sample_ = 0;
  std::uint64_t additions_ = 0;
  std::uint64_t resets_ = 0;
};

}  // namespace v2p::cache
