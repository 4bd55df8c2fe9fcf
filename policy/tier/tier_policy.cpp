#include "policy/tier/tier_policy.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "common/clock.hpp"
#include "common/error.hpp"
#include "policy/tier/tier_stage.hpp"

namespace v2p::tier {

TierPlan plan_tier_moves(const TierView& view, const TierPolicyParams& params) {
  TierPlan plan;
  const auto& s = view.status;
  if (s.queued + s.migrating >= params.max_queued) return plan;  // let the mechanism catch up
  const double share = std::clamp(s.cos.fast_share, 0.0, 1.0);
  const auto cap = static_cast<std::uint64_t>(share * static_cast<double>(s.fast_capacity) + 1e-9);
  if (cap == 0) return plan;
  const auto high = static_cast<std::uint64_t>(std::ceil(params.high_watermark * cap));
  const auto low = static_cast<std::uint64_t>(std::floor(params.low_watermark * cap));
  std::uint64_t budget = params.max_queued - s.queued - s.migrating;

  // Coldest fast extents first: the demotion candidates.
  auto cold = view.on_fast;
  std::sort(cold.begin(), cold.end(), [](const HotExtent& a, const HotExtent& b) {
    return a.heat != b.heat ? a.heat < b.heat : a.extent.index < b.extent.index;
  });
  std::vector<std::uint64_t> fast_set;
  for (const auto& h : view.on_fast) fast_set.push_back(h.extent.index);
  std::sort(fast_set.begin(), fast_set.end());
  // Promotion candidates: hot, not on the fast tier yet, hottest first.
  std::vector<HotExtent> waiting;
  for (const auto& h : view.hottest) {
    if (h.heat < params.promote_heat) break;
    if (h.extent.index >= s.extents) continue;
    if (!std::binary_search(fast_set.begin(), fast_set.end(), h.extent.index)) waiting.push_back(h);
  }
  // May the i-th coldest go? When it is no longer hot, or the i-th hottest waiting extent is
  // displace_factor times hotter (hysteresis: two similar extents do not swap back and forth).
  auto may_demote = [&](std::size_t i) {
    return cold[i].heat < params.promote_heat ||
           (i < waiting.size() && waiting[i].heat >= params.displace_factor * cold[i].heat);
  };
  std::size_t next_cold = 0;
  std::uint64_t fast = s.fast_extents;
  // At or above the high watermark: demote the coldest down to the low one.
  if (fast >= high) {
    while (fast > low && next_cold < cold.size() && budget > 0 && may_demote(next_cold)) {
      plan.demote.push_back(cold[next_cold++].extent.index);
      --fast;
      --budget;
    }
  }
  // Promote into free room; when full, only in place of a much colder extent.
  for (const auto& h : waiting) {
    if (budget == 0) break;
    if (fast >= cap) {
      if (next_cold >= cold.size() || budget < 2 || !may_demote(next_cold)) break;
      plan.demote.push_back(cold[next_cold++].extent.index);
      --fast;
      --budget;
    }
    plan.promote.push_back(h.extent.index);
    ++fast;
    --budget;
  }
  return plan;
}

namespace {

double parse_number(const std::string& key, const std::string& value) {
  try {
    std::size_t used = 0;
    const double d = std::stod(value, &used);
    if (used != value.size()) throw std::invalid_argument(value);
    return d;
  } catch (const std::exception&) {
    throw Error(fmt::format("tier policy: {}={} is not a number", key, value));
  }
}

}  // namespace

TierPolicy::TierPolicy(PolicyContext& context, const PolicyArgs& args) : ctx_(context) {
  for (const auto& [k, v] : args) {
    if (k == "promote_heat") {
      params_.promote_heat = parse_number(k, v);
    } else if (k == "high_watermark") {
      params_.high_watermark = parse_number(k, v);
    } else if (k == "low_watermark") {
      params_.low_watermark = parse_number(k, v);
    } else if (k == "displace_factor") {
      params_.displace_factor = parse_number(k, v);
    } else if (k.starts_with("cos.")) {
      TierClassOfService c;
      const auto colon = v.find(':');
      c.heat_weight = parse_number(k, v.substr(0, colon));
      if (colon != std::string::npos) c.fast_share = parse_number(k, v.substr(colon + 1));
      cos_.emplace_back(k.substr(4), c);
    } else {
      throw Error(
          fmt::format("tier policy: unknown argument '{}' (known: promote_heat, high_watermark, "
                      "low_watermark, displace_factor, cos.<vm>=<weight>[:<share>])",
                      k));
    }
  }
  if (!(params_.low_watermark < params_.high_watermark) || params_.high_watermark > 1.0) {
    throw Error("tier policy: need low_watermark < high_watermark <= 1");
  }
}

void TierPolicy::on_tick(std::uint64_t now_ns) {
  TierControl* tier = ctx_.tier();
  if (tier == nullptr) return;
  const HeatMap& heat = ctx_.heat();
  for (const auto& s : tier->status()) {
    for (const auto& [vm, c] : cos_) {
      if (vm == s.vm_name &&
          (c.heat_weight != s.cos.heat_weight || c.fast_share != s.cos.fast_share)) {
        tier->set_class_of_service(s.vdisk.vm, c);
      }
    }
    TierView view;
    view.status = s;
    // The host's heat map uses the host's extent size; rescale to the tier's extents.
    for (auto h : heat.hottest(s.vdisk, params_.candidates, now_ns)) {
      h.heat *= s.cos.heat_weight;
      h.extent.index = h.extent.index * heat.extent_bytes() / s.extent_bytes;
      view.hottest.push_back(h);
    }
    for (const auto e : tier->fast_extents(s.vdisk)) {
      double sum = 0;
      const auto per = std::max<std::uint64_t>(1, s.extent_bytes / heat.extent_bytes());
      for (std::uint64_t i = 0; i < per; ++i) {
        sum += heat.heat(ExtentRef{s.vdisk, e * per + i}, now_ns);
      }
      view.on_fast.push_back(HotExtent{ExtentRef{s.vdisk, e}, sum * s.cos.heat_weight});
    }
    const auto plan = plan_tier_moves(view, params_);
    for (const auto e : plan.demote) tier->request_demote(ExtentRef{s.vdisk, e});
    for (const auto e : plan.promote) tier->request_promote(ExtentRef{s.vdisk, e});
  }
}

TierAutopilot::TierAutopilot(TierStage& stage, TierPolicyParams params,
                             std::chrono::milliseconds tick)
    : stage_(stage), params_(params), period_(tick) {
  thread_ = std::thread([this] {
    std::unique_lock l(mu_);
    while (!cv_.wait_for(l, period_, [&] { return stop_; })) {
      l.unlock();
      this->tick();
      l.lock();
    }
  });
}

TierAutopilot::~TierAutopilot() {
  {
    std::lock_guard l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void TierAutopilot::tick() {
  const auto now = monotonic_ns();
  TierView view;
  view.status = stage_.status();
  // The stage's heat already carries the class-of-service weight.
  view.hottest = stage_.hottest(params_.candidates, now);
  for (const auto e : stage_.fast_extents()) {
    view.on_fast.push_back(HotExtent{ExtentRef{VdiskKey{}, e.value()}, stage_.heat(e, now)});
  }
  const auto plan = plan_tier_moves(view, params_);
  for (const auto e : plan.demote) stage_.request(ExtentIndex(e), Tier::kSlow);
  for (const auto e : plan.promote) stage_.request(ExtentIndex(e), Tier::kFast);
}

}  // namespace v2p::tier
