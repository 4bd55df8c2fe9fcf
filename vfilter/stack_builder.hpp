// The one place a vdisk's data-path stack is assembled, for flags and the config file alike:
//
//   export -> filters (by FilterClass, then given order) -> flash cache -> tier -> image
//
// The image (FileBackend) is the bottom stage and its asynchronous path is the io_uring image
// path: with nothing asked for it is the whole stack, and asynchronous filters over it add no
// thread handoff. Blocking stages (blocking filters, the cache, the tier, the upstream NBD
// server) run on the connection's tagged workers. Built-in stages stack like filters: the cache
// sits over the tier.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "policy/cache/flash_cache.hpp"
#include "policy/tier/tier_stage.hpp"
#include "vfilter/config_file.hpp"

namespace v2p::vfilter {

struct StackRequest {
  std::vector<FilterConfig> filters;
  std::optional<cache::FlashCacheOptions> cache;  // one cache shared by every image vdisk
  std::optional<tier::TierOptions> tier;          // its fast file serves one vdisk only
  // Every request through a tagged worker even with no stage (WorkerStage; comparisons).
  bool file_backend = false;
  // Lines for the serve log: what was loaded and how each vdisk is stacked.
  std::function<void(std::string_view line)> log;
};

struct TieredVdisk {
  std::string vdisk;
  std::shared_ptr<tier::TierStage> stage;
};

struct BuiltStacks {
  std::shared_ptr<cache::FlashCache> cache;  // null without a cache
  std::vector<TieredVdisk> tiers;
  std::vector<std::string> filter_names;  // in stack order, top first
};

// Sets each vdisk's `backend` to the top of its stack (a caller-built backend is kept as the
// bottom). Throws v2p::Error with one sentence on a filter that cannot load, a stage that
// cannot open, or a request that cannot be honoured (a tier for several vdisks).
BuiltStacks build_stacks(ServerConfig& server, const StackRequest& request);

}  // namespace v2p::vfilter
