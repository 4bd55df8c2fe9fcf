// Cache settings as `v2p serve` takes them: flags (--cache, --cache-size, --cache-block,
// --cache-mode, --cache-quota VM=BYTES, --cache-priority VM=N) and the "cache" object of the
// JSON config file. Errors throw v2p::Error naming what to fix.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/host_layout/size_parse.hpp"
#include "policy/cache/flash_cache.hpp"

namespace v2p::cache {

// Sizes are parsed by the host-layout module's one parser.
using host_layout::parse_size;
// "vm1=4G" → {"vm1", 4 GiB}; "vm1=3" → {"vm1", 3} with parse_int.
std::pair<std::string, std::uint64_t> parse_vm_size(std::string_view text);
std::pair<std::string, int> parse_vm_priority(std::string_view text);

// {"file": "/var/cache/v2p.cache", "size": "8G", "block": "64K", "mode": "write-through",
//  "quotas": {"vm1": "2G"}, "priorities": {"vm1": 2}, "min_frequency": 2}
// Relative paths resolve against base_dir.
FlashCacheOptions parse_cache_config(std::string_view json, const std::filesystem::path& base_dir);

}  // namespace v2p::cache
