#include "cli/tier_options.hpp"

#include <fmt/core.h>

#include <cctype>

#include "common/error.hpp"
#include "common/host_layout/size_parse.hpp"
#include "policy/tier/tier_control.hpp"
#include "policy/tier/tier_policy.hpp"
#include "policy/tier/tier_stage.hpp"

namespace v2p::cli {

void add_tier_flags(CLI::App& app, TierFlags& f) {
  app.add_option("--tier-fast", f.fast,
                 "Tier the image: fast tier file (created); the image is the slow tier");
  app.add_option("--tier-fast-size", f.fast_size, "Fast tier capacity in bytes (default 1G)");
  app.add_option("--tier-extent", f.extent, "Tiering extent in bytes, a power of two (default 1M)");
  app.add_option("--tier-rate", f.rate,
                 "Migration copy rate in bytes/s, 0 = unlimited (default 64M)");
  app.add_option("--tier-promote-heat", f.promote_heat,
                 "Heat (decayed accesses) from which an extent is promoted (default 4)");
  app.add_option("--tier-high-watermark", f.high_watermark,
                 "Fast tier fill that starts demotion of the coldest (default 0.90)");
  app.add_option("--tier-low-watermark", f.low_watermark,
                 "Demote down to this fill (default 0.75)");
  app.add_option("--tier-half-life", f.half_life_s, "Heat half-life in seconds (default 10)");
  app.add_option("--tier-tick-ms", f.tick_ms, "Tier policy period in ms (default 500)");
  app.add_flag("--no-tier-autopilot", f.no_autopilot,
               "Do not run the built-in tier policy: a --policy (e.g. libv2p_tier_policy.so) "
               "decides through TierControl instead");
}

std::optional<tier::TierOptions> tier_stage_options(const TierFlags& f, bool direct) {
  if (f.fast.empty()) return std::nullopt;
  tier::TierOptions o;
  o.fast_file = f.fast;
  o.fast_bytes = host_layout::parse_size(f.fast_size, "--tier-fast-size");
  o.extent_bytes = host_layout::parse_size(f.extent, "--tier-extent");
  o.rate_bytes_per_s = host_layout::parse_size(f.rate, "--tier-rate");
  o.want_direct = direct;
  o.hot_threshold = f.promote_heat;
  if (!(f.half_life_s > 0)) throw Error("--tier-half-life must be positive");
  o.heat_half_life_ns = static_cast<std::uint64_t>(f.half_life_s * 1e9);
  return o;
}

namespace {

class AutopilotRuntime final : public TierRuntime {
 public:
  TierControl* control() noexcept override { return &stages; }
  tier::TierSet stages;
  std::vector<std::unique_ptr<tier::TierAutopilot>> pilots;
};

}  // namespace

std::unique_ptr<TierRuntime> start_tier_policy(const TierFlags& f,
                                               const std::vector<vfilter::TieredVdisk>& tiered) {
  auto rt = std::make_unique<AutopilotRuntime>();
  tier::TierPolicyParams p;
  p.promote_heat = f.promote_heat;
  p.high_watermark = f.high_watermark;
  p.low_watermark = f.low_watermark;
  if (!(p.low_watermark < p.high_watermark && p.high_watermark <= 1.0)) {
    throw Error("need --tier-low-watermark < --tier-high-watermark <= 1");
  }
  for (const auto& [vdisk, stage] : tiered) {
    rt->stages.add(stage);
    fmt::print(
        "v2p serve: tiering {}: fast tier {} ({} extents of {} B), journal {}, rate {} B/s, {}\n",
        vdisk, stage->options().fast_file.string(), stage->geometry().fast_slots,
        stage->geometry().extent_bytes, stage->options().journal.string(),
        stage->options().rate_bytes_per_s,
        f.no_autopilot ? "decided by loaded policies" : "built-in policy");
    if (f.no_autopilot) continue;
    rt->pilots.push_back(
        std::make_unique<tier::TierAutopilot>(*stage, p, std::chrono::milliseconds(f.tick_ms)));
  }
  return rt;
}

}  // namespace v2p::cli
