// Property tests over the simulated host file system: the tagged path recovers the hidden
// layout exactly, untagged foreign I/O never lands in a VM, and completion-window confidences
// are calibrated.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>

#include "correlator/correlator.hpp"
#include "correlator/sim/host_fs_sim.hpp"

namespace v2p::correlator {
namespace {

using sim::kBlock;

struct Run {
  sim::SimOutput sim;
  std::unique_ptr<Correlator> corr;
  std::vector<WindowDecision> decisions;
};

Run run(const sim::SimOptions& o) {
  Run r{sim::simulate(o), std::make_unique<Correlator>(), {}};
  for (const auto& d : r.sim.declarations) r.corr->declare(d);
  if (!r.sim.backend.empty()) r.corr->add_backend_process(r.sim.backend_tgid);
  r.corr->set_window_observer([&r](const WindowDecision& d) { r.decisions.push_back(d); });
  for (const auto& d : r.sim.deliveries) {
    r.corr->advance(d.at_ns);
    if (d.is_record) {
      r.corr->on_record(d.record);
    } else {
      r.corr->on_event(d.event);
    }
  }
  r.corr->drain();
  return r;
}

sim::SimOptions options_for(std::uint64_t seed) {
  sim::SimOptions o;
  o.seed = seed;
  o.copy_on_write = seed % 2 == 1;
  o.backend_vdisks = seed % 3 == 0 ? 1 : 0;
  o.fragmentation = 0.05 + 0.1 * double(seed % 4);
  o.concurrency = 1 + seed % 12;
  return o;
}

// The map of one vdisk as vblock → device block, checking alignment on the way.
std::map<std::uint64_t, std::uint64_t> blocks_of(const V2PMap& m, VdiskKey key, DeviceId dev) {
  std::map<std::uint64_t, std::uint64_t> out;
  for (const auto& e : m.extents(key)) {
    EXPECT_EQ(e.device, dev);
    EXPECT_EQ(e.voffset.value() % kBlock, 0u);
    EXPECT_EQ(e.length % kBlock, 0u);
    EXPECT_EQ(e.sector.value() % (kBlock / 512), 0u);
    for (std::uint64_t i = 0; i < e.length / kBlock; ++i) {
      out[e.voffset.value() / kBlock + i] = e.sector.value() / (kBlock / 512) + i;
    }
  }
  return out;
}

TEST(Simulated, TaggedPathRecoversTheHiddenLayoutExactly) {
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    const auto o = options_for(seed);
    const auto r = run(o);
    for (const auto key : r.sim.tagged) {
      const auto got = blocks_of(r.corr->map(), key, r.sim.device);
      const auto& want = r.sim.truth.at(key);
      std::string diff;
      for (const auto& [vb, pb] : got) {
        const auto it = want.find(vb);
        if ((it == want.end() || it->second != pb) && diff.size() < 400) {
          diff += " map " + std::to_string(vb) + "->" + std::to_string(pb) + " truth " +
                  (it == want.end() ? std::string("hole") : std::to_string(it->second)) + ";";
        }
      }
      for (const auto& [vb, pb] : want) {
        if (!got.contains(vb) && diff.size() < 800) diff += " missing " + std::to_string(vb) + ";";
      }
      ASSERT_EQ(got, want) << diff << " seed " << seed << " vm " << key.vm.value() << " ("
                           << got.size() << " blocks recovered, " << want.size() << " in truth)";
      for (const auto& e : r.corr->map().extents(key)) ASSERT_EQ(e.confidence, 1.0f);
    }
    const auto s = r.corr->stats();
    ASSERT_EQ(s.joined_exact, r.sim.tagged_bios) << "seed " << seed;
    ASSERT_EQ(s.incomplete_requests, 0u) << "seed " << seed;
    ASSERT_EQ(s.pending_events + s.pending_records, 0u);
    if (r.sim.backend.empty()) {
      ASSERT_EQ(s.unattributed, r.sim.untagged_foreign_bios) << "seed " << seed;
    }
  }
}

// The synchronous CoW write path tags the request's data and also the file system's metadata
// (REQ_META, DUP copies), an empty flush and the superblock, at any time inside the window.
TEST(Simulated, TaggedMetadataNeverShiftsTheMap) {
  std::uint64_t metadata = 0;
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    auto o = options_for(seed);
    o.tagged_metadata_per_request = seed % 4 == 0 ? 0.3 : 1.0;
    const auto r = run(o);
    ASSERT_GT(r.sim.tagged_metadata_bios, 0u) << "seed " << seed;
    for (const auto key : r.sim.tagged) {
      ASSERT_EQ(blocks_of(r.corr->map(), key, r.sim.device), r.sim.truth.at(key))
          << "seed " << seed << " vm " << key.vm.value();
      for (const auto& e : r.corr->map().extents(key)) ASSERT_EQ(e.confidence, 1.0f);
    }
    for (const auto key : r.corr->map().vdisks()) {
      for (const auto& e : r.corr->map().extents(key)) {
        ASSERT_GE(e.sector.value(), r.sim.meta_blocks * (kBlock / 512)) << "seed " << seed;
      }
    }
    const auto s = r.corr->stats();
    ASSERT_EQ(s.joined_exact, r.sim.tagged_bios) << "seed " << seed;
    ASSERT_EQ(s.metadata, r.sim.tagged_metadata_bios) << "seed " << seed;
    ASSERT_EQ(s.incomplete_requests, 0u) << "seed " << seed;
    ASSERT_EQ(s.pending_events + s.pending_records, 0u);
    if (r.sim.backend.empty()) {
      ASSERT_EQ(s.unattributed, r.sim.untagged_foreign_bios + r.sim.tagged_metadata_bios)
          << "seed " << seed;
    }
    metadata += s.metadata;
  }
  std::printf("tagged metadata bios kept out of the exact join: %llu\n",
              static_cast<unsigned long long>(metadata));
}

TEST(Simulated, ForeignIoNeverLandsInAVm) {
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    auto o = options_for(seed);
    o.journal_per_request = 2.0;  // every request overlaps journal and metadata bios
    o.metadata_per_request = 1.0;
    const auto r = run(o);
    for (const auto key : r.corr->map().vdisks()) {
      for (const auto& e : r.corr->map().extents(key)) {
        ASSERT_GE(e.sector.value(), r.sim.meta_blocks * (kBlock / 512))
            << "seed " << seed << ": journal/metadata sector attributed to vm " << key.vm.value();
      }
    }
    ASSERT_GE(r.corr->stats().unattributed, r.sim.untagged_foreign_bios);
  }
}

// Bucket window-join decisions by confidence: the fraction right must match the confidence for
// new assignments (bucketed by candidate count, i.e. by confidence 1/n), and be at least the
// confidence for confirmations of a mapping the map already had.
template <class Tweak>
void expect_calibrated(Tweak tweak) {
  struct Bucket {
    double confidence_sum = 0;
    std::uint64_t n = 0, right = 0;
  };
  std::map<int, Bucket> buckets;  // by candidate count (consistent picks in their own bucket)
  std::uint64_t decisions = 0, metadata = 0;
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    auto o = options_for(seed);
    o.tagged_vdisks = 1;
    o.backend_vdisks = 2;
    o.concurrency = 2 + seed % 6;
    tweak(o);
    const auto r = run(o);
    for (const auto& d : r.decisions) {
      const auto it = r.sim.backend_bios.find({d.event_ts, d.mapping.sector.value()});
      ASSERT_NE(it, r.sim.backend_bios.end());
      ASSERT_FALSE(it->second.metadata) << "REQ_META bio assigned to a request, seed " << seed;
      const bool right =
          it->second.vdisk == d.vdisk && it->second.voffset == d.mapping.voffset.value();
      auto& b =
          buckets[d.consistent ? 0 : static_cast<int>(std::min<std::uint32_t>(d.candidates, 5))];
      b.confidence_sum += d.confidence;
      ++b.n;
      b.right += right ? 1 : 0;
      ++decisions;
    }
    // Window joins never touch tagged vdisks' exactness.
    for (const auto key : r.sim.tagged) {
      ASSERT_EQ(blocks_of(r.corr->map(), key, r.sim.device), r.sim.truth.at(key))
          << "seed " << seed;
    }
    ASSERT_EQ(r.corr->stats().metadata, r.sim.backend_metadata_bios) << "seed " << seed;
    metadata += r.sim.backend_metadata_bios;
  }
  ASSERT_GT(decisions, 1000u);
  std::printf("backend REQ_META bios kept out: %llu\n", static_cast<unsigned long long>(metadata));
  for (const auto& [k, b] : buckets) {
    const double expected = b.confidence_sum / double(b.n);
    const double observed = double(b.right) / double(b.n);
    const double sigma = std::sqrt(expected * (1 - expected) / double(b.n));
    std::printf("bucket %s: %llu decisions, mean confidence %.3f, right %.3f\n",
                k == 0 ? "consistent" : (std::to_string(k) + " candidates").c_str(),
                static_cast<unsigned long long>(b.n), expected, observed);
    if (b.n < 50) continue;
    if (k == 0) {
      // Confirmations keep the confidence of the mapping they confirm: conservative by design.
      EXPECT_GE(observed, expected - 4 * sigma - 0.03);
    } else {
      EXPECT_NEAR(observed, expected, 4 * sigma + 0.03) << "bucket " << k;
    }
  }
}

TEST(Simulated, CompletionWindowConfidenceIsCalibrated) {
  expect_calibrated([](sim::SimOptions&) {});
}

// Backend file-system metadata (REQ_META) inside request windows never becomes a candidate.
TEST(Simulated, CompletionWindowKeepsReqMetaOut) {
  expect_calibrated([](sim::SimOptions& o) { o.backend_req_meta_per_request = 1.0; });
}

// Backend requests of several blocks, each physically contiguous run one bio.
TEST(Simulated, CompletionWindowIsCalibratedForMultiBioRequests) {
  expect_calibrated([](sim::SimOptions& o) {
    o.backend_max_request_blocks = 8;
    o.backend_req_meta_per_request = 0.5;
  });
}

}  // namespace
}  // namespace v2p::correlator
