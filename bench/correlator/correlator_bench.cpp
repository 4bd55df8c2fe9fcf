// Correlator throughput and freshness on one core, from a replayed simulated stream.
//   ingest:    joined bios per second through the whole join + map update path
//   replay:    the same from a v2p stream file (parsing included)
//   lookups:   V2PMap::find (point lookup) and whose (reverse) per second
//   freshness: per request, time from the moment its last piece (record or last bio) is handed
//              to the correlator until the map shows it: p50 / p99 / max as counters
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <random>

#include "correlator/correlator.hpp"
#include "correlator/replay.hpp"
#include "correlator/sim/host_fs_sim.hpp"

namespace v2p::correlator {
namespace {

const sim::SimOutput& stream() {
  static const sim::SimOutput out = [] {
    sim::SimOptions o;
    o.seed = 99;
    o.tagged_vdisks = 4;
    o.vdisk_blocks = 1 << 18;   // 1 GiB per vdisk
    o.device_blocks = 1 << 21;  // 8 GiB data region
    o.requests = 200'000;
    o.concurrency = 32;
    o.fragmentation = 0.2;
    o.trim_fraction = 0.02;
    o.journal_per_request = 0.05;
    o.metadata_per_request = 0.0;
    return sim::simulate(o);
  }();
  return out;
}

void feed(Correlator& c, const sim::SimOutput& s) {
  for (const auto& d : s.deliveries) {
    c.advance(d.at_ns);
    if (d.is_record) {
      c.on_record(d.record);
    } else {
      c.on_event(d.event);
    }
  }
  c.drain();
}

void BM_IngestJoinedEvents(benchmark::State& state) {
  const auto& s = stream();
  std::uint64_t joined = 0;
  for (auto _ : state) {
    Correlator c;
    feed(c, s);
    joined += c.stats().joined_exact;
    benchmark::DoNotOptimize(c.map().extent_count());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(joined));
  state.counters["bios_per_run"] = static_cast<double>(s.tagged_bios);
}
BENCHMARK(BM_IngestJoinedEvents)->Unit(benchmark::kMillisecond);

void BM_ReplayStreamFile(benchmark::State& state) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("v2p-bench-" + std::to_string(::getpid()) + ".v2ps");
  sim::write_stream(stream(), path);
  std::uint64_t joined = 0;
  for (auto _ : state) {
    Correlator c;
    replay_streams(c, {path});
    joined += c.stats().joined_exact;
  }
  std::filesystem::remove(path);
  state.SetItemsProcessed(static_cast<std::int64_t>(joined));
}
BENCHMARK(BM_ReplayStreamFile)->Unit(benchmark::kMillisecond);

struct Probe {
  VdiskKey key;
  VirtualOffset v;
};

void BM_PointLookup(benchmark::State& state) {
  Correlator c;
  feed(c, stream());
  const auto keys = c.map().vdisks();
  std::mt19937_64 rng(1);
  std::vector<Probe> probes(1 << 16);
  for (auto& p : probes)
    p = {keys[rng() % keys.size()], VirtualOffset{(rng() % (1ULL << 30)) & ~511ULL}};
  std::size_t i = 0, hits = 0;
  for (auto _ : state) {
    const auto& p = probes[i++ & (probes.size() - 1)];
    const auto e = c.map().find(p.key, p.v);
    hits += e.has_value();
    benchmark::DoNotOptimize(e);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["extents"] = static_cast<double>(c.map().extent_count());
  state.counters["hit_ratio"] = static_cast<double>(hits) / static_cast<double>(state.iterations());
  state.counters["bytes_per_extent"] =
      static_cast<double>(c.map().memory_bytes()) / static_cast<double>(c.map().extent_count());
}
BENCHMARK(BM_PointLookup);

// The same random lookups through find_many, 64 offsets of one vdisk per call (a policy checking
// a batch of candidate blocks); items = lookups.
void BM_PointLookupBatch(benchmark::State& state) {
  Correlator c;
  feed(c, stream());
  const auto keys = c.map().vdisks();
  constexpr std::size_t kBatch = 64;
  std::mt19937_64 rng(1);
  std::vector<VdiskKey> batch_keys(1 << 10);
  std::vector<VirtualOffset> offsets(batch_keys.size() * kBatch);
  for (auto& k : batch_keys) k = keys[rng() % keys.size()];
  for (auto& v : offsets) v = VirtualOffset{(rng() % (1ULL << 30)) & ~511ULL};
  std::vector<std::optional<MappedExtent>> out(kBatch);
  std::size_t i = 0, hits = 0;
  for (auto _ : state) {
    const std::size_t b = i++ & (batch_keys.size() - 1);
    hits += c.map().find_many(batch_keys[b], std::span(offsets).subspan(b * kBatch, kBatch), out);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.counters["hit_ratio"] =
      static_cast<double>(hits) / static_cast<double>(state.iterations() * kBatch);
}
BENCHMARK(BM_PointLookupBatch);

// A policy walking a vdisk front to back (cache-friendly), 4 KiB at a time.
void BM_PointLookupSequential(benchmark::State& state) {
  Correlator c;
  feed(c, stream());
  const auto key = c.map().vdisks().front();
  std::uint64_t v = 0, hits = 0;
  for (auto _ : state) {
    const auto e = c.map().find(key, VirtualOffset{v});
    hits += e.has_value();
    benchmark::DoNotOptimize(e);
    v = (v + 4096) & ((1ULL << 30) - 1);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["hit_ratio"] = static_cast<double>(hits) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_PointLookupSequential);

void BM_Whose(benchmark::State& state) {
  Correlator c;
  feed(c, stream());
  std::mt19937_64 rng(2);
  std::vector<PhysicalSector> probes(1 << 16);
  for (auto& p : probes) p = PhysicalSector{(rng() % (1ULL << 21)) * 8};
  const DeviceId dev = DeviceId::from_major_minor(7, 0);
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(c.map().whose(dev, probes[i++ & (probes.size() - 1)]));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Whose);

void BM_Freshness(benchmark::State& state) {
  const auto& s = stream();
  std::vector<double> lat;
  for (auto _ : state) {
    Correlator c;
    lat.clear();
    for (const auto& d : s.deliveries) {
      const auto placed = c.stats().placed_requests;
      const auto t0 = std::chrono::steady_clock::now();
      c.advance(d.at_ns);
      if (d.is_record) {
        c.on_record(d.record);
      } else {
        c.on_event(d.event);
      }
      const auto t1 = std::chrono::steady_clock::now();
      if (c.stats().placed_requests != placed) {
        lat.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      }
    }
  }
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) {
    return lat.empty() ? 0.0 : lat[static_cast<std::size_t>(p * double(lat.size() - 1))];
  };
  state.counters["p50_us"] = pct(0.50);
  state.counters["p99_us"] = pct(0.99);
  state.counters["max_us"] = lat.empty() ? 0.0 : lat.back();
  state.counters["requests"] = static_cast<double>(lat.size());
}
BENCHMARK(BM_Freshness)->Unit(benchmark::kMillisecond)->Iterations(1);

}  // namespace
}  // namespace v2p::correlator

BENCHMARK_MAIN();
