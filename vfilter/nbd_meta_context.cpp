#include "vfilter/nbd_meta_context.hpp"

#include "vfilter/nbd_wire.hpp"

namespace v2p::vfilter {

std::optional<MetaContextRequest> parse_meta_context_request(std::span<const std::byte> data) {
  const auto chars = [&](std::size_t at, std::size_t n) {
    return std::string_view(reinterpret_cast<const char*>(data.data()) + at, n);
  };
  std::size_t pos = 0;
  // Every length is checked against what is left before it is used.
  const auto take_u32 = [&](std::uint32_t& v) {
    if (data.size() - pos < 4) return false;
    v = nbd::get_be32(data.data() + pos);
    pos += 4;
    return true;
  };
  MetaContextRequest r;
  std::uint32_t name_len = 0;
  if (!take_u32(name_len) || name_len > data.size() - pos) return std::nullopt;
  r.export_name = chars(pos, name_len);
  pos += name_len;
  std::uint32_t count = 0;
  if (!take_u32(count)) return std::nullopt;
  // Each query takes at least its 4-byte length: a count beyond that is malformed, and this
  // bounds the vector by the option's size.
  if (count > (data.size() - pos) / 4) return std::nullopt;
  r.queries.reserve(count);
  for (std::uint32_t i = 0; i < count; ++i) {
    std::uint32_t len = 0;
    if (!take_u32(len) || len > data.size() - pos) return std::nullopt;
    r.queries.push_back(chars(pos, len));
    pos += len;
  }
  if (pos != data.size()) return std::nullopt;
  return r;
}

bool query_selects_base_allocation(std::string_view query, bool listing) noexcept {
  return query == kBaseAllocation || (listing && query == "base:");
}

}  // namespace v2p::vfilter
