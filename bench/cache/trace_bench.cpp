// Trace-driven comparison of the cache's admission and eviction policy with plain LRU: the same
// Zipf trace of cache-block accesses runs through CacheDirectory twice, once with the frequency
// filter (second-hit rule + TinyLFU duel, the default) and once admitting every miss (plain
// LRU). Prints the hit ratio of each per seed and the medians. No I/O: the policy alone.
//
//   cache_trace_bench [--slots N] [--ratio R] [--alpha A] [--accesses N] [--seeds N]
//                     [--vms N]
// --ratio: working set / cache size (default 4). --vms: accesses spread over N VMs of equal
// priority (default 1).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "policy/cache/cache_directory.hpp"

namespace {

using v2p::cache::AdmissionFilter;
using v2p::cache::CacheDirectory;
using v2p::cache::CacheKey;

struct Args {
  std::uint32_t slots = 4096;
  double ratio = 4;
  double alpha = 1.2;
  std::uint64_t accesses = 2'000'000;
  unsigned seeds = 5;
  unsigned vms = 1;
};

std::vector<std::uint64_t> zipf_trace(const Args& a, unsigned seed) {
  const auto universe = static_cast<std::uint64_t>(a.slots * a.ratio);
  std::vector<double> cdf(universe);
  double sum = 0;
  for (std::uint64_t i = 0; i < universe; ++i)
    cdf[i] = sum += 1.0 / std::pow(double(i + 1), a.alpha);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, sum);
  // Ranks scattered over the block space, as fio's zipf scatters them over the file.
  std::vector<std::uint64_t> place(universe);
  for (std::uint64_t i = 0; i < universe; ++i) place[i] = i;
  std::shuffle(place.begin(), place.end(), rng);
  std::vector<std::uint64_t> t(a.accesses);
  for (auto& x : t) x = place[std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin()];
  return t;
}

double run(const Args& a, const std::vector<std::uint64_t>& trace, AdmissionFilter filter) {
  CacheDirectory d({a.slots, 65536, filter, 2});
  std::vector<std::uint32_t> vms;
  for (unsigned i = 0; i < a.vms; ++i) vms.push_back(d.vm("vm" + std::to_string(i)));
  const std::uint64_t warm = trace.size() / 4;  // the first quarter warms the cache
  std::uint64_t hits = 0;
  for (std::uint64_t i = 0; i < trace.size(); ++i) {
    const CacheKey k{v2p::DeviceId::from_major_minor(7, 0), v2p::PhysicalSector(trace[i] * 128)};
    const auto vm = vms[i % vms.size()];
    if (const auto f = d.find(k)) {
      d.hit(f->slot, vm, 4096);
      if (i >= warm) ++hits;
    } else if (const auto fill = d.miss(vm, k, 65536, v2p::Admission::kDefault)) {
      d.complete_fill(fill->slot);
    }
  }
  return double(hits) / double(trace.size() - warm);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const char* v = argv[i + 1];
    if (k == "--slots")
      a.slots = static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
    else if (k == "--ratio")
      a.ratio = std::strtod(v, nullptr);
    else if (k == "--alpha")
      a.alpha = std::strtod(v, nullptr);
    else if (k == "--accesses")
      a.accesses = std::strtoull(v, nullptr, 10);
    else if (k == "--seeds")
      a.seeds = static_cast<unsigned>(std::strtoul(v, nullptr, 10));
    else if (k == "--vms")
      a.vms = static_cast<unsigned>(std::strtoul(v, nullptr, 10));
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (a.slots == 0 || a.ratio <= 0 || a.seeds == 0 || a.vms == 0 || a.accesses < 4) {
    std::fprintf(stderr, "bad arguments\n");
    return 2;
  }
  std::printf("zipf alpha %.2f, cache %u blocks, working set %.0f blocks (%.1fx), %lu accesses\n",
              a.alpha, a.slots, a.slots * a.ratio, a.ratio, a.accesses);
  std::vector<double> lru, freq;
  for (unsigned s = 1; s <= a.seeds; ++s) {
    const auto trace = zipf_trace(a, s);
    lru.push_back(run(a, trace, AdmissionFilter::kAlways));
    freq.push_back(run(a, trace, AdmissionFilter::kFrequency));
    std::printf("seed %u: lru %.4f  v2p %.4f\n", s, lru.back(), freq.back());
  }
  std::printf("median hit ratio: lru %.4f  v2p (second-hit + TinyLFU) %.4f  (+%.1f points)\n",
              median(lru), median(freq), 100 * (median(freq) - median(lru)));
  return 0;
}
