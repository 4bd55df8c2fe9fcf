// V2PMap::restore_sorted (the snapshot's bulk path) against its reference twin, restore() of one
// extent at a time: same extents, reverse lookups and counters, and the bulk-built trees keep
// working under the mutations that follow a restart.
#include <gtest/gtest.h>

#include <random>

#include "v2p/map.hpp"

namespace v2p {
namespace {

const DeviceId kDevs[2] = {DeviceId::from_major_minor(259, 1), DeviceId::from_major_minor(8, 16)};

// Sorted, non-overlapping extents of one vdisk, with runs a restore must coalesce (adjacent in
// both spaces, same generation and confidence) and runs it must not (gap, other device, other
// generation).
std::vector<MappedExtent> random_vdisk(std::mt19937_64& rng, std::size_t n, std::uint64_t base) {
  std::vector<MappedExtent> out;
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t len = (1 + rng() % 16) * 512;
    MappedExtent e{VirtualOffset{v},
                   len,
                   kDevs[rng() % 2],
                   PhysicalSector{base + rng() % 1'000'000 * 64},
                   1 + rng() % 2,
                   rng() % 1'000'000'000'000,
                   rng() % 4 == 0 ? 0.5f : 1.0f};
    if (!out.empty() && rng() % 3 == 0) {  // continues the previous extent physically
      const auto& p = out.back();
      e.device = p.device;
      e.sector = PhysicalSector{p.sector.value() + p.length / 512};
      e.generation = p.generation;
      e.confidence = p.confidence;
    }
    out.push_back(e);
    v += len + (rng() % 2 == 0 ? 0 : (rng() % 8) * 512);
  }
  return out;
}

void expect_same(const V2PMap& a, const V2PMap& b, std::mt19937_64& rng) {
  ASSERT_EQ(a.vdisks(), b.vdisks());
  EXPECT_EQ(a.extent_count(), b.extent_count());
  for (const auto key : a.vdisks()) {
    const auto ea = a.extents(key);
    ASSERT_EQ(ea, b.extents(key));
    EXPECT_EQ(a.mapped_bytes(key), b.mapped_bytes(key));
    for (int i = 0; i < 2000; ++i) {
      const auto& e = ea[rng() % ea.size()];
      const PhysicalSector s{e.sector.value() + rng() % (e.length / 512)};
      const auto oa = a.whose(e.device, s);
      const auto ob = b.whose(e.device, s);
      ASSERT_EQ(oa.has_value(), ob.has_value());
      if (oa) {
        EXPECT_EQ(oa->vdisk, ob->vdisk);
        EXPECT_EQ(oa->voffset, ob->voffset);
        EXPECT_EQ(oa->length, ob->length);
      }
    }
  }
}

TEST(V2PMapRestore, BulkEqualsOneByOneThenMutatesAlike) {
  std::mt19937_64 rng(20261206);
  V2PMap bulk, twin;
  for (std::uint32_t vm = 1; vm <= 3; ++vm) {
    const VdiskKey key{VmId{vm}, VdiskId{1}};
    // Sizes around leaf boundaries (32 entries) and one large vdisk.
    const std::size_t n = vm == 1 ? 20'000 : vm == 2 ? 33 : 1;
    const auto ext = random_vdisk(rng, n, vm * 100'000'000ULL);
    bulk.restore_sorted(key, ext);
    for (const auto& e : ext) twin.restore(key, e);
  }
  ASSERT_GT(bulk.extent_count(), 10'000u);
  ASSERT_LT(bulk.extent_count(), 20'034u);  // some runs were coalesced
  expect_same(bulk, twin, rng);
  EXPECT_LE(bulk.memory_bytes(), twin.memory_bytes() + 4096);

  // The bulk-built trees take inserts, overwrites and trims like any other.
  for (int i = 0; i < 20'000; ++i) {
    const VdiskKey key{VmId{static_cast<std::uint32_t>(1 + rng() % 3)}, VdiskId{1}};
    const std::uint64_t v = rng() % 200'000 * 512;
    if (rng() % 4 == 0) {
      const std::uint64_t len = (1 + rng() % 64) * 512;
      bulk.unmap(key, VirtualOffset{v}, len);
      twin.unmap(key, VirtualOffset{v}, len);
      continue;
    }
    Mapping m;
    m.voffset = VirtualOffset{v};
    m.length = (1 + rng() % 32) * 512;
    m.device = kDevs[rng() % 2];
    m.sector = PhysicalSector{rng() % 4'000'000 * 8};
    m.seen_ns = 1'000'000'000'000 + static_cast<std::uint64_t>(i);
    bulk.map(key, m);
    twin.map(key, m);
  }
  expect_same(bulk, twin, rng);
}

TEST(V2PMapRestore, OutOfOrderOrNonEmptyFallsBackToOneByOne) {
  std::mt19937_64 rng(7);
  const VdiskKey key{VmId{1}, VdiskId{1}};
  auto ext = random_vdisk(rng, 500, 0);
  std::swap(ext[10], ext[400]);  // not in voffset order
  V2PMap bulk, twin;
  bulk.restore_sorted(key, ext);
  for (const auto& e : ext) twin.restore(key, e);
  expect_same(bulk, twin, rng);

  // Overlapping a vdisk that already holds extents: the later extent wins, as with restore().
  const auto more = random_vdisk(rng, 300, 50'000'000);
  bulk.restore_sorted(key, more);
  for (const auto& e : more) twin.restore(key, e);
  expect_same(bulk, twin, rng);
}

}  // namespace
}  // namespace v2p
