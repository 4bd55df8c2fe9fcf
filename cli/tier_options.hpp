// `v2p serve --tier-fast …`: the flags that put a TierStage (policy/tier/) over the served image
// and run the built-in tier policy on it. Only built when the tier component is (V2P_HAVE_TIER).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "policy/tier/tier_stage.hpp"
#include "v2p/tier.hpp"
#include "vfilter/stack_builder.hpp"

namespace v2p::cli {

struct TierFlags {
  std::string fast;  // fast tier file; empty = no tiering
  std::string fast_size = "1G";
  std::string extent = "1M";
  std::string rate = "64M";
  double promote_heat = 4.0;
  double high_watermark = 0.90;
  double low_watermark = 0.75;
  double half_life_s = 10.0;
  unsigned tick_ms = 500;
  bool no_autopilot = false;  // a loaded policy decides instead
};

void add_tier_flags(CLI::App& app, TierFlags& flags);

// The TierStage options the flags ask for (the stack builder puts the stage over the image), or
// nullopt when --tier-fast is not given.
std::optional<tier::TierOptions> tier_stage_options(const TierFlags& flags, bool direct);

// Starts the built-in policy on every tiered vdisk; stops it when destroyed.
class TierRuntime {
 public:
  virtual ~TierRuntime() = default;
  // The stages as policies see them (PolicyContext::tier); valid while the runtime lives.
  [[nodiscard]] virtual TierControl* control() noexcept = 0;
};
std::unique_ptr<TierRuntime> start_tier_policy(const TierFlags& flags,
                                               const std::vector<vfilter::TieredVdisk>& tiered);

}  // namespace v2p::cli
