// Access heat per vdisk extent, decaying exponentially with a half-life, and latency histograms:
// the statistics policies read (PolicyContext::heat, ::latency) and the built-in cache and tier
// policies decide with. Public SDK header: self-contained.
#pragma once

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "v2p/export.hpp"
#include "v2p/types.hpp"

namespace v2p {

// One extent of a vdisk: bytes [index * extent_bytes, (index + 1) * extent_bytes).
struct ExtentRef {
  VdiskKey vdisk;
  std::uint64_t index = 0;
  constexpr auto operator<=>(const ExtentRef&) const = default;
};

struct HotExtent {
  ExtentRef extent;
  double heat = 0;  // decayed access count at the time asked
};

// Heat = sum over accesses of weight * 2^(-(now - t) / half_life). Stored lazily (value and time
// of last update), so an access costs one hash lookup. Thread-compatible: the caller serialises
// mutators (the policy host calls them from one thread).
class V2P_API HeatMap {
 public:
  // extent_bytes must be a power of two; half_life_ns > 0. Throws std::invalid_argument.
  HeatMap(std::uint64_t extent_bytes, std::uint64_t half_life_ns);
  ~HeatMap();
  HeatMap(const HeatMap&) = delete;
  HeatMap& operator=(const HeatMap&) = delete;
  HeatMap(HeatMap&&) noexcept;
  HeatMap& operator=(HeatMap&&) noexcept;

  [[nodiscard]] std::uint64_t extent_bytes() const noexcept;
  [[nodiscard]] std::uint64_t half_life_ns() const noexcept;

  // One access of [offset, offset + length): every extent it touches gains `weight`.
  void add(VdiskKey vdisk, VirtualOffset offset, std::uint64_t length, std::uint64_t now_ns,
           double weight = 1.0);
  [[nodiscard]] double heat(ExtentRef extent, std::uint64_t now_ns) const noexcept;
  // Sum of the vdisk's extent heats.
  [[nodiscard]] double vdisk_heat(VdiskKey vdisk, std::uint64_t now_ns) const noexcept;
  // The `n` hottest extents (all vdisks, or one), hottest first; ties by extent.
  [[nodiscard]] std::vector<HotExtent> hottest(std::size_t n, std::uint64_t now_ns) const;
  [[nodiscard]] std::vector<HotExtent> hottest(VdiskKey vdisk, std::size_t n,
                                               std::uint64_t now_ns) const;
  // Forgets extents whose heat fell below `threshold`, so the map tracks the working set only.
  std::size_t prune(std::uint64_t now_ns, double threshold);
  [[nodiscard]] std::size_t tracked() const noexcept;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Latencies in power-of-two nanosecond buckets (bucket b holds [2^b, 2^(b+1)) ns); a fixed-size
// value type, cheap to copy into a policy.
struct LatencyHistogram {
  static constexpr unsigned kBuckets = 48;
  std::array<std::uint64_t, kBuckets> buckets{};
  std::uint64_t count = 0;
  std::uint64_t sum_ns = 0;

  void record(std::uint64_t ns) noexcept {
    const unsigned b = ns == 0 ? 0 : static_cast<unsigned>(std::bit_width(ns) - 1);
    ++buckets[b < kBuckets ? b : kBuckets - 1];
    ++count;
    sum_ns += ns;
  }
  void merge(const LatencyHistogram& o) noexcept {
    for (unsigned i = 0; i < kBuckets; ++i) buckets[i] += o.buckets[i];
    count += o.count;
    sum_ns += o.sum_ns;
  }
  // Upper edge of the bucket holding quantile q (0 < q <= 1): within a factor of two above.
  [[nodiscard]] std::uint64_t quantile_ns(double q) const noexcept {
    if (count == 0) return 0;
    const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count)));
    std::uint64_t seen = 0;
    for (unsigned i = 0; i < kBuckets; ++i) {
      seen += buckets[i];
      if (seen >= rank && buckets[i] != 0) return (std::uint64_t{2} << i) - 1;
    }
    return (std::uint64_t{2} << (kBuckets - 1)) - 1;
  }
  [[nodiscard]] double mean_ns() const noexcept {
    return count == 0 ? 0.0 : static_cast<double>(sum_ns) / static_cast<double>(count);
  }
};

}  // namespace v2p
