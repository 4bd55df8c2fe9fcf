#include "common/latency_histogram.hpp"

namespace v2p {

double LayerHistogram::quantile_seconds(double q) const noexcept {
  std::uint64_t total = 0;
  for (const auto n : buckets) total += n;
  if (total == 0) return 0;
  const double rank = q * static_cast<double>(total);
  std::uint64_t below = 0;
  for (std::size_t b = 0; b < kLatencyBuckets; ++b) {
    if (buckets[b] == 0) continue;
    if (static_cast<double>(below + buckets[b]) >= rank) {
      const double lo = b == 0 ? 0 : latency_bucket_upper_seconds(b - 1);
      const double hi = latency_bucket_upper_seconds(b);
      const double frac = (rank - static_cast<double>(below)) / static_cast<double>(buckets[b]);
      return lo + (hi - lo) * (frac < 0 ? 0 : frac);
    }
    below += buckets[b];
  }
  return latency_bucket_upper_seconds(kLatencyBuckets - 1);
}

const char* op_class3_name(std::size_t op) noexcept {
  switch (op) {
    case 0:
      return "read";
    case 1:
      return "write";
    default:
      return "other";
  }
}

OpLayerStats AtomicOpLayerStats::load() const noexcept {
  OpLayerStats s;
  s.requests = requests_.load(std::memory_order_relaxed);
  s.bytes = bytes_.load(std::memory_order_relaxed);
  s.latency.sum_ns = sum_ns_.load(std::memory_order_relaxed);
  for (std::size_t b = 0; b < kLatencyBuckets; ++b) {
    s.latency.buckets[b] = buckets_[b].load(std::memory_order_relaxed);
    s.latency.count += s.latency.buckets[b];
  }
  return s;
}

}  // namespace v2p
