#include "policy/cache/cache_config.hpp"

#include <fmt/core.h>

#include <cctype>
#include <charconv>
#include <nlohmann/json.hpp>

#include "common/error.hpp"

namespace v2p::cache {
namespace {

std::pair<std::string_view, std::string_view> split_eq(std::string_view text, const char* what) {
  const auto eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == text.size())
    throw Error(fmt::format("{} must look like VM=VALUE, not '{}'", what, text));
  return {text.substr(0, eq), text.substr(eq + 1)};
}

std::uint64_t size_of(const nlohmann::json& v, const std::string& where) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_string()) return parse_size(v.get<std::string>());
  throw Error(where + " must be a byte count (a number or a string such as \"64K\")");
}

}  // namespace

std::pair<std::string, std::uint64_t> parse_vm_size(std::string_view text) {
  const auto [vm, v] = split_eq(text, "--cache-quota");
  return {std::string(vm), parse_size(v)};
}

std::pair<std::string, int> parse_vm_priority(std::string_view text) {
  const auto [vm, v] = split_eq(text, "--cache-priority");
  int n = 0;
  const auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size())
    throw Error(fmt::format("--cache-priority: '{}' is not an integer", v));
  return {std::string(vm), n};
}

FlashCacheOptions parse_cache_config(std::string_view text, const std::filesystem::path& base_dir) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(fmt::format("config 'cache' is not valid JSON: {}", e.what()));
  }
  if (!j.is_object()) throw Error("config 'cache' must be an object");
  static const std::vector<std::string> known = {"file",   "size",       "block",        "mode",
                                                 "quotas", "priorities", "min_frequency"};
  for (const auto& [k, v] : j.items()) {
    if (std::find(known.begin(), known.end(), k) == known.end())
      throw Error("config 'cache': unknown key '" + k + "'");
  }
  FlashCacheOptions o;
  if (!j.contains("file") || !j["file"].is_string())
    throw Error("config 'cache': 'file' (the cache file or device) is required");
  const std::filesystem::path f = j["file"].get<std::string>();
  o.file = f.is_absolute() ? f : base_dir / f;
  if (j.contains("size")) o.size_bytes = size_of(j["size"], "config 'cache.size'");
  if (j.contains("block")) {
    const auto b = size_of(j["block"], "config 'cache.block'");
    if (b == 0 || b > (64ULL << 20) || b % 4096 != 0)
      throw Error("config 'cache.block' must be a multiple of 4K up to 64M");
    o.block_bytes = static_cast<std::uint32_t>(b);
  }
  if (j.contains("mode")) {
    if (!j["mode"].is_string()) throw Error("config 'cache.mode' must be a string");
    o.write_mode = parse_write_mode(j["mode"].get<std::string>());
  }
  if (j.contains("min_frequency")) {
    if (!j["min_frequency"].is_number_unsigned())
      throw Error("config 'cache.min_frequency' must be a non-negative integer");
    o.min_frequency = j["min_frequency"].get<unsigned>();
  }
  if (j.contains("quotas")) {
    if (!j["quotas"].is_object()) throw Error("config 'cache.quotas' must map VM names to sizes");
    for (const auto& [vm, v] : j["quotas"].items())
      o.quotas.emplace_back(vm, size_of(v, "config 'cache.quotas." + vm + "'"));
  }
  if (j.contains("priorities")) {
    if (!j["priorities"].is_object())
      throw Error("config 'cache.priorities' must map VM names to integers");
    for (const auto& [vm, v] : j["priorities"].items()) {
      if (!v.is_number_integer())
        throw Error("config 'cache.priorities." + vm + "' must be an integer");
      o.priorities.emplace_back(vm, v.get<int>());
    }
  }
  return o;
}

}  // namespace v2p::cache
