// plan_tier_moves: promotions by heat, watermarks, displacement with hysteresis, share, queue.
#include <gtest/gtest.h>

#include "policy/tier/tier_policy.hpp"

namespace v2p::tier {
namespace {

TierView view(std::uint64_t capacity, std::vector<std::pair<std::uint64_t, double>> fast,
              std::vector<std::pair<std::uint64_t, double>> hot) {
  TierView v;
  v.status.extents = 1000;
  v.status.extent_bytes = 1 << 20;
  v.status.fast_capacity = capacity;
  v.status.fast_extents = fast.size();
  for (auto [e, h] : fast) v.on_fast.push_back({{VdiskKey{}, e}, h});
  for (auto [e, h] : hot) v.hottest.push_back({{VdiskKey{}, e}, h});
  std::sort(v.hottest.begin(), v.hottest.end(),
            [](const HotExtent& a, const HotExtent& b) { return a.heat > b.heat; });
  return v;
}

TEST(TierPlan, PromotesExtentsAboveTheThresholdHottestFirst) {
  const auto v = view(10, {{1, 50}}, {{1, 50}, {7, 30}, {3, 20}, {9, 3}});
  const auto p = plan_tier_moves(v, TierPolicyParams{});
  EXPECT_EQ(p.promote, (std::vector<std::uint64_t>{7, 3})) << "1 is there, 9 is below 4";
  EXPECT_TRUE(p.demote.empty());
}

TEST(TierPlan, AboveTheHighWatermarkDemotesColdestToTheLowOne) {
  std::vector<std::pair<std::uint64_t, double>> fast;
  for (std::uint64_t e = 0; e < 10; ++e) fast.emplace_back(e, 3.0 - 0.1 * static_cast<double>(e));
  const auto p = plan_tier_moves(view(10, fast, {}), TierPolicyParams{});
  // high = 9, low = 7: 10 -> 7, the three coldest.
  EXPECT_EQ(p.demote, (std::vector<std::uint64_t>{9, 8, 7}));
  EXPECT_TRUE(p.promote.empty());
}

TEST(TierPlan, TheWatermarkKeepsExtentsThatAreStillHotWithoutHotterCandidates) {
  std::vector<std::pair<std::uint64_t, double>> fast;
  for (std::uint64_t e = 0; e < 10; ++e) fast.emplace_back(e, 100.0 - static_cast<double>(e));
  // Nothing waiting is twice as hot as the coldest (91): no churn.
  auto p = plan_tier_moves(view(10, fast, {{20, 150}}), TierPolicyParams{});
  EXPECT_TRUE(p.demote.empty());
  EXPECT_TRUE(p.promote.empty());
  // One is: it displaces the coldest.
  p = plan_tier_moves(view(10, fast, {{20, 190}, {21, 150}}), TierPolicyParams{});
  EXPECT_EQ(p.demote, (std::vector<std::uint64_t>{9}));
  EXPECT_EQ(p.promote, (std::vector<std::uint64_t>{20}));
}

TEST(TierPlan, AFullTierIsRefreshedOnlyByMuchHotterExtents) {
  TierPolicyParams params;
  params.high_watermark = 1.0;
  params.low_watermark = 0.75;
  std::vector<std::pair<std::uint64_t, double>> fast = {{0, 10}, {1, 10}, {2, 5}, {3, 20}};
  // Full: the watermark demotes the coldest (2) and 50 takes its room; 51 is more than twice as
  // hot as the next coldest (0, heat 10) and displaces it; 52 (11) is not and stays out.
  const auto p = plan_tier_moves(view(4, fast, {{50, 25}, {51, 21}, {52, 11}}), params);
  EXPECT_EQ(p.demote, (std::vector<std::uint64_t>{2, 0}));
  EXPECT_EQ(p.promote, (std::vector<std::uint64_t>{50, 51}));
}

TEST(TierPlan, ShareAndQueueBoundTheWork) {
  auto v = view(10, {}, {{1, 50}, {2, 40}, {3, 30}, {4, 20}});
  v.status.cos.fast_share = 0.2;  // 2 slots
  auto p = plan_tier_moves(v, TierPolicyParams{});
  EXPECT_EQ(p.promote, (std::vector<std::uint64_t>{1, 2}));
  v.status.cos.fast_share = 1.0;
  v.status.queued = 15;
  p = plan_tier_moves(v, TierPolicyParams{});
  EXPECT_EQ(p.promote.size(), 1u) << "16 moves may be queued";
}

}  // namespace
}  // namespace v2p::tier
