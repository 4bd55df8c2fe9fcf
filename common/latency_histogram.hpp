// Latency histograms shared by every layer v2p times (export, host file system, device), with
// the probe's bucket layout (pfilter/io_stats.hpp): bucket b holds [2^b, 2^(b+1)) µs, bucket 0
// also below 1 µs. One layout means the three layers add, compare and export alike.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstdint>

namespace v2p {

inline constexpr std::size_t kLatencyBuckets = 32;

[[nodiscard]] constexpr std::size_t latency_bucket(std::uint64_t ns) noexcept {
  const std::uint64_t us = ns / 1000;
  if (us == 0) return 0;
  const auto b = static_cast<std::size_t>(std::bit_width(us) - 1);
  return b < kLatencyBuckets ? b : kLatencyBuckets - 1;
}

// Upper bound of bucket b in seconds (the Prometheus `le`).
[[nodiscard]] constexpr double latency_bucket_upper_seconds(std::size_t b) noexcept {
  return static_cast<double>(std::uint64_t{2} << b) * 1e-6;
}

struct LayerHistogram {
  std::uint64_t count = 0;
  std::uint64_t sum_ns = 0;
  std::array<std::uint64_t, kLatencyBuckets> buckets{};

  void add(std::uint64_t ns) noexcept {
    ++count;
    sum_ns += ns;
    ++buckets[latency_bucket(ns)];
  }
  void merge(const LayerHistogram& o) noexcept {
    count += o.count;
    sum_ns += o.sum_ns;
    for (std::size_t b = 0; b < kLatencyBuckets; ++b) buckets[b] += o.buckets[b];
  }
  // The q-quantile in seconds, interpolated linearly inside its bucket (as Prometheus'
  // histogram_quantile does); 0 when empty.
  [[nodiscard]] double quantile_seconds(double q) const noexcept;
};

// Requests, bytes and latency of one operation class at one layer.
struct OpLayerStats {
  std::uint64_t requests = 0;
  std::uint64_t bytes = 0;
  LayerHistogram latency;
  void merge(const OpLayerStats& o) noexcept {
    requests += o.requests;
    bytes += o.bytes;
    latency.merge(o.latency);
  }
};

// Read, write, other (flush, trim, write zeroes): the classes every view shows.
enum class OpClass3 : std::uint8_t { kRead = 0, kWrite = 1, kOther = 2 };
inline constexpr std::size_t kOpClasses = 3;
[[nodiscard]] const char* op_class3_name(std::size_t op) noexcept;

// The same counters, updated by many threads with relaxed atomic adds and read by one (a
// sender or a scrape): no lock on the data path. A reader may see a request's count before its
// bucket; each value is exact by itself.
class AtomicOpLayerStats {
 public:
  void add(std::uint64_t bytes, std::uint64_t ns) noexcept {
    requests_.fetch_add(1, std::memory_order_relaxed);
    bytes_.fetch_add(bytes, std::memory_order_relaxed);
    sum_ns_.fetch_add(ns, std::memory_order_relaxed);
    buckets_[latency_bucket(ns)].fetch_add(1, std::memory_order_relaxed);
  }
  [[nodiscard]] OpLayerStats load() const noexcept;

 private:
  std::atomic<std::uint64_t> requests_{0}, bytes_{0}, sum_ns_{0};
  std::array<std::atomic<std::uint64_t>, kLatencyBuckets> buckets_{};
};

}  // namespace v2p
