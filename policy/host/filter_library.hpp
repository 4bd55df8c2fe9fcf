// Loading a filter shared object (`--filter FILE.so --filter-arg k=v`): the policy loader's
// checks (PluginLibrary: the ABI stamp first, then the V2P_FILTER entry points), then the
// filter's constructor with its args. The result keeps the library loaded for as long as any
// stage holds the filter.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string_view>

#include "v2p/filter.hpp"

namespace v2p::policy {

using FilterLog = std::function<void(std::string_view line)>;

// Throws v2p::Error with one sentence naming the file: cannot load, wrong ABI, missing entry
// point, or the constructor refused its args. `log` receives the filter's FilterContext::log
// lines, prefixed "filter NAME: ".
std::shared_ptr<Filter> load_filter(const std::filesystem::path& file, const FilterArgs& args,
                                    FilterLog log);

}  // namespace v2p::policy
