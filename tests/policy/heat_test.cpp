// HeatMap: decay by half-life, extent arithmetic, ranking, pruning; LatencyHistogram quantiles.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <stdexcept>

#include "v2p/heat.hpp"

namespace v2p {
namespace {

constexpr std::uint64_t kSecond = 1'000'000'000;
const VdiskKey kA{VmId(1), VdiskId(1)};
const VdiskKey kB{VmId(2), VdiskId(1)};

TEST(HeatMap, HalvesEveryHalfLife) {
  HeatMap h(1 << 20, kSecond);
  h.add(kA, VirtualOffset(0), 4096, 0, 8.0);
  EXPECT_DOUBLE_EQ(h.heat({kA, 0}, 0), 8.0);
  EXPECT_NEAR(h.heat({kA, 0}, kSecond), 4.0, 1e-9);
  EXPECT_NEAR(h.heat({kA, 0}, 3 * kSecond), 1.0, 1e-9);
  // A new access adds to the decayed value, not to the stored one.
  h.add(kA, VirtualOffset(0), 4096, 3 * kSecond);
  EXPECT_NEAR(h.heat({kA, 0}, 3 * kSecond), 2.0, 1e-9);
  EXPECT_EQ(h.heat({kA, 1}, 0), 0.0);
}

TEST(HeatMap, AnAccessHeatsEveryExtentItTouches) {
  HeatMap h(4096, kSecond);
  h.add(kA, VirtualOffset(4095), 2, 0);  // straddles extents 0 and 1
  h.add(kA, VirtualOffset(8192), 4096, 0);
  EXPECT_EQ(h.heat({kA, 0}, 0), 1.0);
  EXPECT_EQ(h.heat({kA, 1}, 0), 1.0);
  EXPECT_EQ(h.heat({kA, 2}, 0), 1.0);
  EXPECT_EQ(h.heat({kA, 3}, 0), 0.0);
  EXPECT_EQ(h.tracked(), 3U);
  EXPECT_DOUBLE_EQ(h.vdisk_heat(kA, 0), 3.0);
  EXPECT_EQ(h.vdisk_heat(kB, 0), 0.0);
}

TEST(HeatMap, HottestRanksByDecayedHeatAgainstAReference) {
  HeatMap h(1 << 16, 10 * kSecond);
  std::mt19937_64 rng(42);
  std::map<ExtentRef, double> reference;
  for (int i = 0; i < 5000; ++i) {
    const VdiskKey v = rng() % 2 ? kA : kB;
    const std::uint64_t extent = rng() % 64;
    const std::uint64_t t = static_cast<std::uint64_t>(i) * (kSecond / 100);
    h.add(v, VirtualOffset(extent << 16), 512, t);
    reference[{v, extent}] += std::exp2(-static_cast<double>(50 * kSecond - t) / (10.0 * kSecond));
  }
  const auto top = h.hottest(10, 50 * kSecond);
  ASSERT_EQ(top.size(), 10U);
  for (std::size_t i = 0; i < top.size(); ++i) {
    EXPECT_NEAR(top[i].heat, reference[top[i].extent], 1e-6 * reference[top[i].extent]);
    if (i > 0) {
      EXPECT_GE(top[i - 1].heat, top[i].heat);
    }
  }
  // Nothing outside the top is hotter than its last member.
  for (const auto& [k, v] : reference) {
    bool in_top = false;
    for (const auto& t : top) in_top = in_top || t.extent == k;
    if (!in_top) {
      EXPECT_LE(v, top.back().heat * (1 + 1e-9));
    }
  }
  for (const auto& e : h.hottest(kA, 5, 50 * kSecond)) EXPECT_EQ(e.extent.vdisk, kA);
}

TEST(HeatMap, PruneForgetsColdExtentsOnly) {
  HeatMap h(4096, kSecond);
  h.add(kA, VirtualOffset(0), 1, 0);
  h.add(kA, VirtualOffset(4096), 1, 10 * kSecond);
  EXPECT_EQ(h.prune(10 * kSecond, 0.01), 1U);  // extent 0 decayed to 2^-10
  EXPECT_EQ(h.tracked(), 1U);
  EXPECT_EQ(h.heat({kA, 1}, 10 * kSecond), 1.0);
}

TEST(HeatMap, RefusesBadParameters) {
  EXPECT_THROW(HeatMap(3000, kSecond), std::invalid_argument);
  EXPECT_THROW(HeatMap(4096, 0), std::invalid_argument);
}

TEST(LatencyHistogram, QuantilesWithinAFactorOfTwo) {
  LatencyHistogram l;
  EXPECT_EQ(l.quantile_ns(0.99), 0U);
  for (int i = 0; i < 99; ++i) l.record(1000);  // bucket [512, 1024)
  l.record(1'000'000);                          // bucket [524288, 1048576)
  EXPECT_EQ(l.count, 100U);
  EXPECT_EQ(l.quantile_ns(0.5), 1023U);
  EXPECT_EQ(l.quantile_ns(0.99), 1023U);
  EXPECT_EQ(l.quantile_ns(1.0), 1048575U);
  EXPECT_NEAR(l.mean_ns(), (99 * 1000 + 1e6) / 100, 1e-9);
  LatencyHistogram m;
  m.record(1000);
  m.merge(l);
  EXPECT_EQ(m.count, 101U);
}

}  // namespace
}  // namespace v2p
