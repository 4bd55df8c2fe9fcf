// `v2p serve --tier-fast …`: the flags that put a TierStage (policy/tier/) over the served image
// and run the built-in tier policy on it. Only built when the tier component is (V2P_HAVE_TIER).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "v2p/tier.hpp"
#include "vfilter/block_backend.hpp"
#include "vfilter/server.hpp"

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

// "4096", "64k", "1M", "2G" (powers of 1024) -> bytes; throws v2p::Error naming the flag.
std::uint64_t parse_bytes(const std::string& flag, const std::string& text);

// FileBackend(image) -> TierStage, or null when --tier-fast is not given.
std::shared_ptr<vfilter::BlockBackend> make_tier_backend(const TierFlags& flags,
                                                         const std::filesystem::path& image,
                                                         bool read_only, bool direct);

// Starts the built-in policy on every tiered vdisk; stops it when destroyed.
class TierRuntime {
 public:
  virtual ~TierRuntime() = default;
  // The stages as policies see them (PolicyContext::tier); valid while the runtime lives.
  [[nodiscard]] virtual TierControl* control() noexcept = 0;
};
std::unique_ptr<TierRuntime> start_tier_policy(const TierFlags& flags,
                                               const std::vector<vfilter::VdiskConfig>& vdisks);

}  // namespace v2p::cli
