#include <gtest/gtest.h>

#include <cstdio>
#include <random>

#include <set>

#include "correlator/map_reference.hpp"
#include "correlator/sorted_chunks.hpp"
#include "v2p/map.hpp"

namespace v2p {
namespace {

constexpr std::uint64_t kS = 512;
const VdiskKey kA{VmId{1}, VdiskId{1}};
const VdiskKey kB{VmId{2}, VdiskId{7}};
const DeviceId kLoop0 = DeviceId::from_major_minor(7, 0);
const DeviceId kLoop1 = DeviceId::from_major_minor(7, 1);

Mapping at(std::uint64_t voff, std::uint64_t len, DeviceId d, std::uint64_t sector,
           float conf = 1.0f, std::uint64_t ts = 1) {
  return {VirtualOffset{voff}, len, d, PhysicalSector{sector}, ts, conf};
}

std::vector<MappedExtent> without_time(std::vector<MappedExtent> v) {
  for (auto& e : v) e.last_seen_ns = 0;
  return v;
}

TEST(V2PMap, ContiguousVdiskIsOneExtentHoweverLarge) {
  V2PMap m;
  for (std::uint64_t i = 0; i < 10000; ++i) m.map(kA, at(i * 65536, 65536, kLoop0, 2048 + i * 128));
  ASSERT_EQ(m.extent_count(), 1u);
  const auto e = m.extents(kA);
  EXPECT_EQ(e[0].length, 10000u * 65536);
  EXPECT_EQ(e[0].sector, PhysicalSector{2048});
  EXPECT_EQ(m.mapped_bytes(kA), 10000u * 65536);
}

TEST(V2PMap, OverwriteInPlaceKeepsGenerationRelocationBumpsIt) {
  V2PMap m;
  m.map(kA, at(0, 8 * kS, kLoop0, 100));
  m.map(kA, at(2 * kS, 2 * kS, kLoop0, 102));  // same place
  ASSERT_EQ(m.extent_count(), 1u);
  EXPECT_EQ(m.extents(kA)[0].generation, 1u);
  m.map(kA, at(2 * kS, 2 * kS, kLoop0, 500));  // copy-on-write elsewhere
  const auto e = m.extents(kA);
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[1].voffset, VirtualOffset{2 * kS});
  EXPECT_EQ(e[1].sector, PhysicalSector{500});
  EXPECT_EQ(e[1].generation, 2u);
  EXPECT_EQ(e[2].sector, PhysicalSector{104});
  EXPECT_FALSE(m.whose(kLoop0, PhysicalSector{102})) << "the old location is no longer owned";
  const auto o = m.whose(kLoop0, PhysicalSector{501});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->voffset, VirtualOffset{3 * kS});
  EXPECT_EQ(o->length, kS);
}

TEST(V2PMap, TrimSplitsExactly) {
  V2PMap m;
  m.map(kA, at(0, 16 * kS, kLoop0, 0));
  m.unmap(kA, VirtualOffset{4 * kS}, 4 * kS);
  const auto e = m.extents(kA);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].length, 4 * kS);
  EXPECT_EQ(e[1].voffset, VirtualOffset{8 * kS});
  EXPECT_EQ(e[1].sector, PhysicalSector{8});
  EXPECT_EQ(m.mapped_bytes(kA), 12 * kS);
  EXPECT_FALSE(m.whose(kLoop0, PhysicalSector{5}));
}

TEST(V2PMap, ReusedPhysicalSpaceChangesOwner) {
  V2PMap m;
  m.map(kA, at(0, 8 * kS, kLoop0, 0));
  m.map(kB, at(64 * kS, 2 * kS, kLoop0, 3));
  EXPECT_EQ(m.whose(kLoop0, PhysicalSector{3})->vdisk, kB);
  EXPECT_EQ(m.whose(kLoop0, PhysicalSector{2})->vdisk, kA);
  EXPECT_EQ(m.mapped_bytes(kA), 6 * kS);
}

TEST(V2PMap, LookupClipsToTheRange) {
  V2PMap m;
  m.map(kA, at(0, 8 * kS, kLoop0, 0));
  m.map(kA, at(8 * kS, 8 * kS, kLoop1, 0));
  const auto l = m.lookup(kA, VirtualOffset{6 * kS}, 4 * kS);
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[0].voffset, VirtualOffset{6 * kS});
  EXPECT_EQ(l[0].sector, PhysicalSector{6});
  EXPECT_EQ(l[0].length, 2 * kS);
  EXPECT_EQ(l[1].device, kLoop1);
  EXPECT_EQ(l[1].length, 2 * kS);
  EXPECT_FALSE(m.find(kA, VirtualOffset{16 * kS}));
  EXPECT_EQ(m.find(kA, VirtualOffset{9 * kS})->voffset, VirtualOffset{8 * kS});
}

TEST(V2PMap, LowerConfidenceRefreshDoesNotLowerConfidence) {
  V2PMap m;
  m.map(kA, at(0, 8 * kS, kLoop0, 0, 1.0f));
  m.map(kA, at(0, 8 * kS, kLoop0, 0, 0.5f));
  EXPECT_EQ(m.extents(kA)[0].confidence, 1.0f);
  m.map(kA, at(0, 8 * kS, kLoop0, 40, 0.5f));
  EXPECT_NEAR(m.extents(kA)[0].confidence, 0.5f, 1e-4);
}

// The real map against the per-sector twin, over random maps, overwrites, relocations, reuse
// across vdisks and trims, with fixed seeds.
TEST(V2PMap, MatchesReferenceTwinOnRandomOperations) {
  const DeviceId devs[] = {kLoop0, kLoop1};
  const VdiskKey keys[] = {kA, kB};
  const float confs[] = {1.0f, 0.5f, 0.25f};
  for (std::uint32_t seed = 1; seed <= 200; ++seed) {
    std::mt19937_64 rng(seed);
    auto uni = [&](std::uint64_t lo, std::uint64_t hi) {
      return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng);
    };
    V2PMap real;
    testing::ReferenceMap ref;
    std::uint64_t next_v = 0, next_p = 0;
    for (int op = 0; op < 300; ++op) {
      const VdiskKey k = keys[uni(0, 1)];
      const DeviceId d = devs[uni(0, 1)];
      const auto kind = uni(0, 9);
      if (kind < 6) {
        const auto v = uni(0, 255), n = uni(1, 32), p = uni(0, 480);
        const float c = confs[uni(0, 2)];
        real.map(k, at(v * kS, n * kS, d, p, c, static_cast<std::uint64_t>(op)));
        ref.map(k, v, n, d, p, c);
      } else if (kind < 8) {
        // Sequential writer: extends the previous range, mostly contiguous physically.
        const auto n = uni(1, 16);
        if (uni(0, 3) == 0) next_p = uni(0, 480);
        if (next_v + n > 256) next_v = 0;
        if (next_p + n > 512) next_p = 0;
        real.map(kA, at(next_v * kS, n * kS, kLoop0, next_p));
        ref.map(kA, next_v, n, kLoop0, next_p, 1.0f);
        next_v += n;
        next_p += n;
      } else {
        const auto v = uni(0, 255), n = uni(1, 48);
        real.unmap(k, VirtualOffset{v * kS}, n * kS);
        ref.unmap(k, v, n);
      }
      for (const auto key : keys) {
        ASSERT_EQ(without_time(real.extents(key)), ref.extents(key))
            << "seed " << seed << " op " << op;
        ASSERT_EQ(real.mapped_bytes(key), ref.mapped_sectors(key) * kS) << "seed " << seed;
      }
      if (op % 10 == 0) {
        for (const auto dev : devs) {
          for (std::uint64_t p = 0; p < 520; ++p) {
            const auto want = ref.whose(dev, p);
            const auto got = real.whose(dev, PhysicalSector{p});
            ASSERT_EQ(bool(want), bool(got)) << "seed " << seed << " op " << op << " p " << p;
            if (want) {
              ASSERT_EQ(got->vdisk, want->first);
              ASSERT_EQ(got->voffset, VirtualOffset{want->second * kS});
            }
          }
        }
        const auto v = uni(0, 255), n = uni(1, 64);
        std::uint64_t covered = 0;
        for (const auto& e : real.lookup(kA, VirtualOffset{v * kS}, n * kS)) {
          ASSERT_GE(e.voffset.value(), v * kS);
          ASSERT_LE(e.voffset.value() + e.length, (v + n) * kS);
          const auto owner = ref.whose(e.device, e.sector.value());
          ASSERT_TRUE(owner);
          ASSERT_EQ(owner->second * kS, e.voffset.value());
          covered += e.length;
        }
        ASSERT_LE(covered, n * kS);
      }
    }
    std::size_t count = 0;
    for (const auto key : keys) count += real.extents(key).size();
    ASSERT_EQ(real.extent_count(), count);
    const V2PMap copy = real;
    for (const auto key : keys) ASSERT_EQ(copy.extents(key), real.extents(key));
  }
}

// The tree under the map against std::set at a size where the fence level, the leaf slabs and
// the huge-page mappings all take part (the twin test above keeps trees small): random inserts
// and erases, then point lookups (last_le, the interpolated path) and lower_bound for random
// keys, and a deep copy.
TEST(V2PMap, TreeUnderneathMatchesStdSetAtScale) {
  using correlator::FwdEntry;
  using Tree = correlator::SortedChunks<FwdEntry, std::uint64_t, correlator::FwdKey>;
  for (std::uint64_t seed = 1; seed <= 3; ++seed) {
    std::mt19937_64 rng(seed);
    Tree t;
    std::set<std::uint64_t> ref;
    const std::uint64_t space = seed == 2 ? 1u << 20 : 1ull << 36;  // dense or sparse keys
    for (int op = 0; op < 300000; ++op) {
      const std::uint64_t k = rng() % space;
      if (rng() % 4 == 0 && !ref.empty()) {
        const auto it = ref.lower_bound(k);
        if (it == ref.end()) continue;
        ASSERT_TRUE(t.erase_key(*it));
        ref.erase(it);
      } else if (ref.insert(k).second) {
        FwdEntry e;
        e.voffset = k;
        e.length = 1;
        t.insert(e);
      }
    }
    ASSERT_EQ(t.size(), ref.size());
    const Tree copy = t;
    for (const Tree* tree : {static_cast<const Tree*>(&t), &copy}) {
      std::vector<std::uint64_t> all;
      tree->for_each([&](const FwdEntry& e) { all.push_back(e.voffset); });
      ASSERT_TRUE(std::equal(all.begin(), all.end(), ref.begin(), ref.end()));
      for (int q = 0; q < 200000; ++q) {
        const std::uint64_t k = rng() % (space + 100);
        const auto ub = ref.upper_bound(k);
        const auto p = tree->last_le(k);
        // The batch path (locate, then finish) agrees with last_le.
        const auto pb = tree->last_le_located(tree->locate(k), k);
        ASSERT_EQ(bool(p), bool(pb)) << k;
        if (p) {
          ASSERT_EQ(p->leaf, pb->leaf);
          ASSERT_EQ(p->idx, pb->idx);
        }
        if (ub == ref.begin()) {
          ASSERT_FALSE(p) << k;
        } else {
          ASSERT_TRUE(p) << k;
          ASSERT_EQ(tree->get(*p).voffset, *std::prev(ub)) << "seed " << seed << " key " << k;
        }
        const auto lb = ref.lower_bound(k);
        const auto pl = tree->lower_bound(k);
        ASSERT_EQ(tree->at_end(pl), lb == ref.end());
        if (lb != ref.end()) {
          ASSERT_EQ(tree->get(pl).voffset, *lb);
        }
      }
    }
  }
}

// find_many is find, element by element: on a map large enough for the fence level, with hits,
// holes, offsets before the first and past the last extent, an unknown vdisk, and an output
// shorter than the input.
TEST(V2PMap, FindManyEqualsFindForEachOffset) {
  std::mt19937_64 rng(7);
  V2PMap m;
  for (std::uint64_t i = 0; i < 100000; ++i) {
    const std::uint64_t v = (rng() % (1ULL << 22)) * 4096;
    m.map(i % 3 == 0 ? kB : kA, at(v, 4096 * (1 + rng() % 4), kLoop0, rng() % (1ULL << 30)));
  }
  for (const VdiskKey key : {kA, kB, VdiskKey{VmId{9}, VdiskId{9}}}) {
    std::vector<VirtualOffset> offsets(1000);
    for (auto& o : offsets) o = VirtualOffset{rng() % ((1ULL << 34) + (1ULL << 20))};
    offsets[0] = VirtualOffset{0};
    offsets[1] = VirtualOffset{~0ULL};
    for (const std::size_t out_size : {offsets.size(), std::size_t{5}, std::size_t{0}}) {
      std::vector<std::optional<MappedExtent>> out(out_size, MappedExtent{});
      const std::size_t found = m.find_many(key, offsets, out);
      std::size_t want_found = 0;
      for (std::size_t i = 0; i < out_size; ++i) {
        const auto want = m.find(key, offsets[i]);
        want_found += want.has_value();
        ASSERT_EQ(out[i], want) << "offset " << offsets[i].value();
      }
      EXPECT_EQ(found, want_found);
      if (key == kA && out_size == offsets.size()) {
        EXPECT_GT(found, 0u);
      }
    }
  }
}

// Memory per extent: both the forward entry and its reverse entry, with leaf and index overhead.
TEST(V2PMap, MemoryPerExtent) {
  std::mt19937_64 rng(42);
  V2PMap sequential, scattered;
  constexpr std::uint64_t kN = 200000;
  for (std::uint64_t i = 0; i < kN; ++i) {
    // Fragmented image: every extent is 4 KiB apart from its neighbour physically.
    sequential.map(kA, at(i * 4096, 4096, kLoop0, i * 16));
    scattered.map(kA, at(i * 4096, 4096, kLoop0, (rng() % (1ULL << 30)) * 8));
  }
  ASSERT_EQ(sequential.extent_count(), kN);
  const double seq = double(sequential.memory_bytes()) / double(kN);
  const double sca = double(scattered.memory_bytes()) / double(scattered.extent_count());
  std::printf("bytes per extent: physically ascending %.1f, physically random %.1f\n", seq, sca);
  EXPECT_LE(seq, 64.0);
  EXPECT_LE(sca, 72.0);
}

}  // namespace
}  // namespace v2p
