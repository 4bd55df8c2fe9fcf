// The cache's parts on their own: the on-flash formats, the
// frequency sketch, and the directory's invariants, quotas and priorities over random sequences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

#include "common/crc32c.hpp"
#include "policy/cache/cache_config.hpp"
#include "policy/cache/cache_directory.hpp"
#include "policy/cache/cache_format.hpp"
#include "policy/cache/frequency_sketch.hpp"

namespace v2p::cache {
namespace {

TEST(CacheFormat, EntryRoundTripsAndEveryFlippedByteIsRejected) {
  EntryHeader h;
  h.key = {DeviceId::from_major_minor(7, 3), PhysicalSector(123456)};
  h.slot = CacheSlot(17);
  h.length = 65536;
  h.generation = 99;
  h.data_crc = 0xdeadbeef;
  h.vm = "vm-alpha";
  std::array<std::byte, kHeaderBytes> buf{};
  encode_entry(h, buf);
  const auto d = decode_entry(buf, 65536);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->key, h.key);
  EXPECT_EQ(d->slot, h.slot);
  EXPECT_EQ(d->length, h.length);
  EXPECT_EQ(d->generation, h.generation);
  EXPECT_EQ(d->data_crc, h.data_crc);
  EXPECT_EQ(d->vm, h.vm);
  EXPECT_FALSE(decode_entry(buf, 4096)) << "length above the block size";
  for (std::size_t i = 0; i < kHeaderBytes; ++i) {
    auto bad = buf;
    bad[i] ^= std::byte{0x40};
    EXPECT_FALSE(decode_entry(bad, 65536)) << "flipped byte " << i;
  }
}

TEST(CacheFormat, GeometryFitsTheFileAndSuperblockRoundTrips) {
  for (std::uint64_t size : {1ULL << 20, 64ULL << 20, 1ULL << 30, (1ULL << 30) + 12345}) {
    const auto g = plan_geometry(size, 64 << 10);
    EXPECT_LE(g.file_bytes(), size);
    EXPECT_GT(g.file_bytes() + kHeaderBytes + (64 << 10), size) << "room for one more slot";
    EXPECT_GE(g.bitmap_bytes * 8, g.slots);
    Superblock sb{g, true, 42, 0x1234};
    std::array<std::byte, kHeaderBytes> buf{};
    encode_superblock(sb, buf);
    const auto d = decode_superblock(buf);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->geometry, g);
    EXPECT_TRUE(d->clean);
    EXPECT_EQ(d->next_generation, 42U);
    buf[20] ^= std::byte{1};
    EXPECT_FALSE(decode_superblock(buf));
  }
  EXPECT_THROW(plan_geometry(8192, 64 << 10), std::exception);
  EXPECT_THROW(plan_geometry(1 << 30, 1000), std::exception);
}

TEST(FrequencySketch, CountsApproximatelyAndAges) {
  FrequencySketch s(1000);
  for (int i = 0; i < 5; ++i) s.increment(key_hash({DeviceId(), PhysicalSector(1)}));
  EXPECT_GE(s.estimate(key_hash({DeviceId(), PhysicalSector(1)})), 5U);
  EXPECT_LE(s.estimate(key_hash({DeviceId(), PhysicalSector(2)})), 1U);
  // Many other keys: the counters are halved, so old popularity fades.
  for (std::uint64_t k = 100; k < 30000; ++k)
    s.increment(key_hash({DeviceId(), PhysicalSector(k)}));
  EXPECT_GT(s.resets(), 0U);
  EXPECT_LT(s.estimate(key_hash({DeviceId(), PhysicalSector(1)})), 5U);
}

CacheKey key(std::uint64_t block) {
  return {DeviceId::from_major_minor(8, 0), PhysicalSector(block * 128)};
}

// Random sequences against the directory: after every step all invariants hold, no VM is ever
// above its quota, and entries are found exactly where a reference set says.
TEST(CacheDirectory, RandomSequencesKeepInvariantsAndQuotas) {
  for (unsigned seed = 1; seed <= 20; ++seed) {
    std::mt19937_64 rng(seed);
    CacheDirectory::Options o;
    o.slots = 32;
    o.block_bytes = 65536;
    o.min_frequency = 1 + seed % 3;
    CacheDirectory d(o);
    const std::uint32_t vms[3] = {d.vm("a"), d.vm("b"), d.vm("c")};
    d.set_quota(vms[0], 10 * 65536);
    d.set_quota(vms[1], 20 * 65536);
    d.set_priority(vms[2], 1);
    std::set<CacheKey> ref;
    std::vector<CacheSlot> filling, pinned;
    for (int step = 0; step < 3000; ++step) {
      const auto vm = vms[rng() % 3];
      const auto k = key(rng() % 100);
      const int op = static_cast<int>(rng() % 10);
      if (op < 6) {
        if (const auto f = d.find(k); f && f->state == SlotState::kValid) {
          d.hit(f->slot, vm, 4096);
          if (rng() % 4 == 0) {
            d.pin(f->slot);
            pinned.push_back(f->slot);
          }
        } else if (!f) {
          const auto hint = static_cast<Admission>(rng() % 3);
          if (auto fill = d.miss(vm, k, 65536, hint)) {
            if (fill->evicted) ref.erase(*fill->evicted);
            ref.insert(k);
            filling.push_back(fill->slot);
          }
        }
      } else if (op == 6 && !filling.empty()) {
        const auto s = filling.back();
        filling.pop_back();
        const auto k2 = d.key_of(s);
        // Still the indexed entry for k2 (not dropped, and k2 not refilled in another slot)?
        const bool live = d.state_of(s) == SlotState::kFilling;
        if (rng() % 5 == 0) {
          d.abort_fill(s);
          if (live) ref.erase(k2);
        } else {
          ASSERT_EQ(d.complete_fill(s), live);
        }
      } else if (op == 7 && !pinned.empty()) {
        d.unpin(pinned.back());
        pinned.pop_back();
      } else if (op == 8) {
        const std::uint64_t first = rng() % 100, n = 1 + rng() % 3;
        d.drop_range(key(first).device, key(first).sector, 128 * n);
        // Entries are 128 sectors at multiples of 128: exactly blocks [first, first + n) go.
        for (std::uint64_t b = first; b < first + n; ++b) ref.erase(key(b));
      } else if (op == 9) {
        d.set_quota(vms[rng() % 2], (1 + rng() % 20) * 65536);
        std::set<CacheKey> now;
        for (const auto& x : d.keys()) now.insert(x);
        for (auto it = ref.begin(); it != ref.end();)
          it = now.contains(*it) ? std::next(it) : ref.erase(it);
      }
      if (pinned.empty()) {
        const auto bad = d.check();
        ASSERT_FALSE(bad) << "seed " << seed << " step " << step << ": " << *bad;
      }
      std::set<CacheKey> now;
      for (const auto& x : d.keys()) now.insert(x);
      ASSERT_EQ(now, ref) << "seed " << seed << " step " << step;
      ASSERT_LE(d.entries(), o.slots);
    }
  }
}

TEST(CacheDirectory, DropRangeFindsEntriesStartingBeforeTheRange) {
  CacheDirectory d({8, 65536, AdmissionFilter::kAlways, 1});
  const auto vm = d.vm("a");
  auto f = d.miss(vm, key(10), 65536, Admission::kDefault);
  ASSERT_TRUE(f);
  ASSERT_TRUE(d.complete_fill(f->slot));
  // 4 KiB in the middle of the entry's 64 KiB.
  EXPECT_EQ(d.drop_range(key(10).device, PhysicalSector(10 * 128 + 40), 8), 1U);
  EXPECT_EQ(d.entries(), 0U);
  f = d.miss(vm, key(10), 65536, Admission::kDefault);
  ASSERT_TRUE(d.complete_fill(f->slot));
  EXPECT_EQ(d.drop_range(key(10).device, PhysicalSector(11 * 128), 8), 0U) << "just after it";
  EXPECT_EQ(d.drop_range(DeviceId::from_major_minor(8, 1), key(10).sector, 128), 0U)
      << "other device";
  EXPECT_EQ(d.entries(), 1U);
}

TEST(CacheDirectory, SecondHitRuleAdmitsOnlyRepeatedMisses) {
  CacheDirectory d({8, 65536, AdmissionFilter::kFrequency, 2});
  const auto vm = d.vm("a");
  EXPECT_FALSE(d.miss(vm, key(1), 65536, Admission::kDefault));
  EXPECT_TRUE(d.miss(vm, key(1), 65536, Admission::kDefault));
  EXPECT_FALSE(d.miss(vm, key(2), 65536, Admission::kBypass));
  EXPECT_FALSE(d.miss(vm, key(2), 65536, Admission::kBypass));
  EXPECT_TRUE(d.miss(vm, key(3), 65536, Admission::kAdmit)) << "the hook overrides the filter";
  EXPECT_EQ(d.stats(vm).rejected, 3U);
}

TEST(CacheDirectory, HigherPriorityIsNeverEvictedByLower) {
  CacheDirectory d({4, 65536, AdmissionFilter::kAlways, 1});
  const auto gold = d.vm("gold"), bronze = d.vm("bronze");
  d.set_priority(gold, 5);
  for (std::uint64_t i = 0; i < 4; ++i) {
    auto f = d.miss(gold, key(i), 65536, Admission::kDefault);
    ASSERT_TRUE(f);
    d.complete_fill(f->slot);
  }
  for (std::uint64_t i = 10; i < 20; ++i)
    EXPECT_FALSE(d.miss(bronze, key(i), 65536, Admission::kDefault)) << "bronze evicted gold";
  EXPECT_EQ(d.stats(gold).resident_bytes, 4U * 65536);
  // Gold evicts its own LRU entry; then bronze's entries go first once there are some.
  auto f = d.miss(gold, key(30), 65536, Admission::kDefault);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->evicted, key(0));
  d.complete_fill(f->slot);
  d.set_priority(bronze, 9);
  f = d.miss(bronze, key(40), 65536, Admission::kDefault);
  ASSERT_TRUE(f) << "a higher priority evicts a lower one";
  EXPECT_EQ(d.stats(gold).evictions, 2U);
}

// A Zipf(1.2) trace over 4x the cache: the frequency filter keeps the head of the distribution
// and beats plain LRU (which the kAlways filter is).
double hit_ratio(AdmissionFilter filter, unsigned seed) {
  const std::uint32_t slots = 256, universe = 1024;
  CacheDirectory d({slots, 65536, filter, 2});
  const auto vm = d.vm("a");
  std::vector<double> cdf(universe);
  double sum = 0;
  for (std::uint32_t i = 0; i < universe; ++i) cdf[i] = sum += 1.0 / std::pow(i + 1.0, 1.2);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, sum);
  std::uint64_t hits = 0, total = 0;
  for (int i = 0; i < 200000; ++i) {
    const auto rank = std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin();
    const auto k = key((static_cast<std::uint64_t>(rank) * 2654435761ULL) % 1000003);
    if (const auto f = d.find(k)) {
      d.hit(f->slot, vm, 65536);
      if (i > 50000) ++hits;
    } else if (auto fill = d.miss(vm, k, 65536, Admission::kDefault)) {
      d.complete_fill(fill->slot);
    }
    if (i > 50000) ++total;
  }
  return double(hits) / double(total);
}

TEST(CacheDirectory, FrequencyAdmissionBeatsPlainLruOnZipf) {
  for (unsigned seed : {1U, 2U, 3U}) {
    const double lru = hit_ratio(AdmissionFilter::kAlways, seed);
    const double tiny = hit_ratio(AdmissionFilter::kFrequency, seed);
    EXPECT_GT(tiny, lru + 0.02) << "seed " << seed << ": lru " << lru << " filter " << tiny;
  }
}

}  // namespace
}  // namespace v2p::cache

namespace v2p::cache {
namespace {

TEST(CacheConfig, SizesFlagsAndJson) {
  EXPECT_EQ(parse_size("65536"), 65536U);
  EXPECT_EQ(parse_size("64K"), 65536U);
  EXPECT_EQ(parse_size("8g"), 8ULL << 30);
  EXPECT_EQ(parse_size("1MiB"), 1ULL << 20);
  EXPECT_THROW(parse_size("12Q"), std::exception);
  EXPECT_THROW(parse_size("G"), std::exception);
  EXPECT_EQ(parse_vm_size("vm1=2G"), (std::pair<std::string, std::uint64_t>{"vm1", 2ULL << 30}));
  EXPECT_EQ(parse_vm_priority("db=-3"), (std::pair<std::string, int>{"db", -3}));
  EXPECT_THROW(parse_vm_size("=2G"), std::exception);
  EXPECT_THROW(parse_vm_priority("vm=high"), std::exception);
  const auto o = parse_cache_config(
      R"({"file": "c.bin", "size": "1G", "block": 131072, "mode": "write-around",
          "quotas": {"vm1": "256M"}, "priorities": {"vm1": 2}})",
      "/etc/v2p");
  EXPECT_EQ(o.file, "/etc/v2p/c.bin");
  EXPECT_EQ(o.size_bytes, 1ULL << 30);
  EXPECT_EQ(o.block_bytes, 131072U);
  EXPECT_EQ(o.write_mode, WriteMode::kWriteAround);
  ASSERT_EQ(o.quotas.size(), 1U);
  EXPECT_EQ(o.quotas[0].second, 256ULL << 20);
  EXPECT_EQ(o.priorities[0].second, 2);
  EXPECT_THROW(parse_cache_config(R"({"size": "1G"})", "/"), std::exception) << "no file";
  EXPECT_THROW(parse_cache_config(R"({"file": "x", "blocks": 1})", "/"), std::exception);
  EXPECT_THROW(parse_cache_config(R"({"file": "x", "block": 1000})", "/"), std::exception);
  EXPECT_THROW(parse_cache_config(R"({"file": "x", "mode": "write-back"})", "/"), std::exception);
}

}  // namespace
}  // namespace v2p::cache
