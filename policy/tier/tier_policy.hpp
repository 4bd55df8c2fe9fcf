// The built-in tier policy: extents at least `promote_heat` hot go to the fast tier, hottest
// first; when the fast tier (the VM's share of it) fills past the high watermark the coldest
// extents there go back to the slow tier until it is down to the low watermark. The decision is
// a pure function over a snapshot (plan_tier_moves), so tests check it without I/O; TierPolicy
// runs it from the SDK's on_tick against PolicyContext::tier(), TierAutopilot from its own tick
// against one TierStage (for `v2p serve` without a policy host).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "v2p/heat.hpp"
#include "v2p/policy.hpp"
#include "v2p/tier.hpp"

namespace v2p::tier {

class TierStage;

struct TierPolicyParams {
  double promote_heat = 4.0;     // X: hotter extents belong on the fast tier
  double high_watermark = 0.90;  // of the usable fast capacity: start demoting
  double low_watermark = 0.75;   // demote down to this
  // An extent on the fast tier is displaced by a colder-tier candidate only when the candidate is
  // this many times hotter (hysteresis: no ping-pong between two similar extents).
  double displace_factor = 2.0;
  std::size_t candidates = 512;  // hottest extents looked at per tick
  std::size_t max_queued = 16;   // moves the mechanism may have queued before we add more
};

// What the policy sees of one vdisk at a tick.
struct TierView {
  TierVdiskStatus status;
  std::vector<HotExtent> hottest;  // hottest first (extent.index = extent of this vdisk)
  // Every extent on the fast tier with its heat now.
  std::vector<HotExtent> on_fast;
};

struct TierPlan {
  std::vector<std::uint64_t> promote;  // hottest first
  std::vector<std::uint64_t> demote;   // coldest first
};

[[nodiscard]] TierPlan plan_tier_moves(const TierView& view, const TierPolicyParams& params);

// A v2p::Policy: on_tick plans every tiered vdisk from PolicyContext::heat() and queues the moves
// through PolicyContext::tier(). Args: promote_heat, high_watermark, low_watermark,
// displace_factor (numbers), cos.<vm name>=<heat weight>[:<fast share>].
class TierPolicy final : public Policy {
 public:
  TierPolicy(PolicyContext& context, const PolicyArgs& args);
  [[nodiscard]] std::string_view name() const override { return "tier"; }
  void on_tick(std::uint64_t now_ns) override;

 private:
  PolicyContext& ctx_;
  TierPolicyParams params_;
  std::vector<std::pair<std::string, TierClassOfService>> cos_;
};

// Runs plan_tier_moves every `tick` against one stage, using the stage's own heat.
class TierAutopilot {
 public:
  TierAutopilot(TierStage& stage, TierPolicyParams params, std::chrono::milliseconds tick);
  ~TierAutopilot();
  TierAutopilot(const TierAutopilot&) = delete;
  TierAutopilot& operator=(const TierAutopilot&) = delete;
  // One planning round now (the thread calls this every tick).
  void tick();

 private:
  TierStage& stage_;
  TierPolicyParams params_;
  std::chrono::milliseconds period_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace v2p::tier
