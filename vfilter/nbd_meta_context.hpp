// NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT: parsing the option data and deciding
// which of our contexts a query names. Pure, like the handshake that calls it. The only context
// served is base:allocation (holes and zeroes, vfilter/nbd_block_status.*).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace v2p::vfilter {

inline constexpr std::string_view kBaseAllocation = "base:allocation";
// The id SET_META_CONTEXT hands out for base:allocation (any non-zero value would do).
inline constexpr std::uint32_t kBaseAllocationId = 1;

struct MetaContextRequest {
  std::string_view export_name;
  std::vector<std::string_view> queries;
};

// u32 name length, name, u32 query count, then per query u32 length and bytes; nullopt when a
// length points past the data or bytes are left over (NBD_REP_ERR_INVALID). The views point
// into `data`.
std::optional<MetaContextRequest> parse_meta_context_request(std::span<const std::byte> data);

// Whether `query` names base:allocation. Listing also accepts the namespace wildcard "base:".
bool query_selects_base_allocation(std::string_view query, bool listing) noexcept;

}  // namespace v2p::vfilter
