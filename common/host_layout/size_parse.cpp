#include "common/host_layout/size_parse.hpp"

#include <fmt/core.h>

#include <cctype>
#include <charconv>
#include <string>

#include "common/error.hpp"

namespace v2p::host_layout {

std::uint64_t parse_size(std::string_view text, std::string_view what) {
  const std::string who =
      what.empty() ? fmt::format("'{}'", text) : fmt::format("{} '{}'", what, text);
  std::uint64_t n = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec == std::errc::result_out_of_range) throw Error(fmt::format("{} is too large", who));
  if (ec != std::errc() || p == text.data())
    throw Error(fmt::format("{} is not a size (say 65536, 64K, 512M or 8G)", who));
  std::string unit(p, text.data() + text.size());
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  int shift = -1;
  if (unit.empty() || unit == "B")
    shift = 0;
  else if (unit == "K" || unit == "KIB" || unit == "KB")
    shift = 10;
  else if (unit == "M" || unit == "MIB" || unit == "MB")
    shift = 20;
  else if (unit == "G" || unit == "GIB" || unit == "GB")
    shift = 30;
  else if (unit == "T" || unit == "TIB" || unit == "TB")
    shift = 40;
  if (shift < 0) throw Error(fmt::format("{} has an unknown unit (use K, M, G or T)", who));
  if (shift > 0 && n > (~0ULL >> shift)) throw Error(fmt::format("{} is too large", who));
  return n << shift;
}

}  // namespace v2p::host_layout
