// The `v2p serve --config FILE` format: JSON listing the listeners and, per VM, its vdisks.
// Documented with an example in docs/operator-guide.md.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vfilter/server.hpp"

namespace v2p::vfilter {

// A policy or filter to load (`--policy FILE.so --policy-arg key=value`, `--filter FILE.so
// --filter-arg key=value`, or "policies" / "filters" in the file).
struct PluginConfig {
  std::filesystem::path file;
  std::vector<std::pair<std::string, std::string>> args;  // in the order given
};
using PolicyConfig = PluginConfig;
using FilterConfig = PluginConfig;

struct ServeConfig {
  ServerConfig server;
  std::filesystem::path record;  // empty = no record file
  std::vector<PolicyConfig> policies;
  // Data-path filters, in the order given (the stack builder orders them by class).
  std::vector<FilterConfig> filters;
  std::uint64_t policy_tick_ms = 1000;
  // The "cache" object as JSON text, empty when absent: the flash cache (policy/cache/) parses
  // it, so this parser does not depend on it.
  std::string cache;
};

// Throws v2p::Error naming the offending key. Relative image paths are resolved against
// `base_dir` (the config file's directory).
ServeConfig parse_serve_config(std::string_view json, const std::filesystem::path& base_dir);
ServeConfig load_serve_config(const std::filesystem::path& file);

// "[HOST:]PORT" (IPv6 as "[::1]:PORT") into host and port; throws v2p::Error when malformed.
void parse_tcp_address(const std::string& spec, std::string& host, std::uint16_t& port);
// Octal permission string such as "0660"; throws v2p::Error when malformed.
mode_t parse_socket_mode(const std::string& text);

}  // namespace v2p::vfilter
