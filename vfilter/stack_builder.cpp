#include "vfilter/stack_builder.hpp"

#include <fmt/core.h>

#include <algorithm>

#include "common/error.hpp"
#include "policy/cache/cache_stage.hpp"
#include "policy/cache/origin_resolver.hpp"
#include "policy/host/filter_library.hpp"
#include "vfilter/file_backend.hpp"
#include "vfilter/filter_stage.hpp"
#include "vfilter/nbd_upstream_backend.hpp"
#include "vfilter/worker_stage.hpp"

namespace v2p::vfilter {
namespace {

struct LoadedFilter {
  std::shared_ptr<Filter> filter;
  FilterClass filter_class;
};

// Every filter once (shared by all vdisks), ordered by class; stable, so within a class the
// given order holds.
std::vector<LoadedFilter> load_filters(const StackRequest& r) {
  std::vector<LoadedFilter> out;
  for (const auto& f : r.filters) {
    auto filter = policy::load_filter(f.file, f.args, r.log);
    const auto cls = filter->filter_class();
    if (static_cast<unsigned>(cls) > static_cast<unsigned>(FilterClass::kCache)) {
      throw Error(fmt::format("filter {} declares an unknown class {}", f.file.filename().string(),
                              static_cast<unsigned>(cls)));
    }
    if (r.log) {
      r.log(fmt::format("filter {} loaded from {} ({} args)", filter->name(), f.file.string(),
                        f.args.size()));
    }
    out.push_back({std::move(filter), cls});
  }
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return static_cast<unsigned>(a.filter_class) < static_cast<unsigned>(b.filter_class);
  });
  return out;
}

void log_cache(const StackRequest& r, const cache::FlashCache& fc) {
  if (!r.log) return;
  const auto& co = *r.cache;
  if (r.tier) r.log("cache over a tier: entries last for this run only (docs/cache.md)");
  const auto& g = fc.geometry();
  const auto& rr = fc.restore_report();
  r.log(fmt::format(
      "cache {}: {} blocks of {} KiB ({} MiB), {}, {} entries kept{}", co.file.string(), g.slots,
      g.block_bytes >> 10, fc.capacity_bytes() >> 20,
      co.write_mode == cache::WriteMode::kWriteThrough ? "write-through" : "write-around",
      rr.restored, rr.clean ? "" : " (new, or not closed cleanly: started empty)"));
}

}  // namespace

BuiltStacks build_stacks(ServerConfig& server, const StackRequest& r) {
  BuiltStacks built;
  const auto filters = load_filters(r);
  for (const auto& f : filters) built.filter_names.emplace_back(f.filter->name());
  const bool any_stage = !filters.empty() || r.cache || r.tier || r.file_backend;
  if (r.tier) {
    const auto images = std::count_if(server.vdisks.begin(), server.vdisks.end(),
                                      [](auto& v) { return !v.backend && v.upstream.empty(); });
    if (images != 1)
      throw Error("a tier's fast file serves one image vdisk; this stack has " +
                  std::to_string(images));
  }
  if (r.cache) {
    auto options = *r.cache;
    // Over a tier the cache's physical keys do not say where the bytes are: one run only.
    if (r.tier) options.persistent = false;
    built.cache = std::make_shared<cache::FlashCache>(std::move(options));
    log_cache(r, *built.cache);
  }
  for (auto& v : server.vdisks) {
    if (!any_stage && !v.backend) continue;  // the io_uring image path
    std::vector<std::string> layers;
    std::shared_ptr<BlockBackend> stack = v.backend;
    const bool image = !stack && v.upstream.empty();
    if (!stack && !v.upstream.empty()) {
      stack = std::make_shared<NbdUpstreamBackend>(v.upstream, v.upstream_connections, v.read_only);
      layers.push_back("upstream " + v.upstream);
    } else if (!stack) {
      if (r.tier && v.read_only) {
        throw Error("--tier-fast needs a writable image (migrations write to it)");
      }
      stack = std::make_shared<FileBackend>(v.image, v.read_only, server.direct_io);
      layers.push_back("image " + v.image.string());
      if (r.file_backend) {
        stack = std::make_shared<WorkerStage>(std::move(stack));
        layers.push_back("workers");
      }
    } else {
      layers.push_back(stack->describe());
    }
    if (r.tier && image) {
      auto tier = std::make_shared<tier::TierStage>(stack, *r.tier);
      built.tiers.push_back({v.vdisk, tier});
      stack = std::move(tier);
      layers.push_back("tier");
    }
    if (built.cache) {
      if (image) {
        stack = std::make_shared<cache::CacheStage>(
            built.cache, stack, std::make_unique<cache::FiemapResolver>(v.image), v.vdisk);
        layers.push_back("cache");
      } else if (r.log) {
        r.log(fmt::format("vdisk {} is not an image file: not cached", v.vdisk));
      }
    }
    const std::string image_text = v.image.empty() ? v.upstream : v.image.string();
    const VdiskInfo info{v.vm, v.vdisk, image_text, v.read_only};
    for (auto f = filters.rbegin(); f != filters.rend(); ++f) {
      stack = std::make_shared<FilterStage>(f->filter, stack, info, r.log);
      layers.emplace_back(f->filter->name());
    }
    v.backend = std::move(stack);
    if (r.log) {
      std::string text;
      for (auto l = layers.rbegin(); l != layers.rend(); ++l) {
        text += (text.empty() ? "" : " -> ") + *l;
      }
      r.log(fmt::format("stack of vdisk {}: {}", v.vdisk, text));
    }
  }
  return built;
}

}  // namespace v2p::vfilter
