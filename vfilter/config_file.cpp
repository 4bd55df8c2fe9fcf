#include "vfilter/config_file.hpp"

#include <fmt/core.h>

#include <charconv>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "common/error.hpp"

namespace v2p::vfilter {

using nlohmann::json;

namespace {

template <class T>
T get_or(const json& obj, const char* key, T fallback, const std::string& where) {
  if (!obj.contains(key)) return fallback;
  try {
    return obj.at(key).get<T>();
  } catch (const json::exception&) {
    throw Error(fmt::format("{}: key '{}' has the wrong type", where, key));
  }
}

void check_keys(const json& obj, std::initializer_list<std::string_view> known,
                const std::string& where) {
  for (const auto& [key, value] : obj.items()) {
    bool ok = false;
    for (auto k : known) ok = ok || key == k;
    if (!ok) throw Error(fmt::format("{}: unknown key '{}'", where, key));
  }
}

VdiskConfig parse_vdisk(const json& d, const std::string& vm, const std::filesystem::path& base,
                        const std::string& where) {
  if (!d.is_object()) throw Error(where + ": a vdisk must be an object");
  check_keys(d, {"name", "image", "export", "read_only", "upstream", "upstream_connections"},
             where);
  VdiskConfig v;
  v.vm = vm;
  v.vdisk = get_or<std::string>(d, "name", "", where);
  const auto image = get_or<std::string>(d, "image", "", where);
  if (v.vdisk.empty()) throw Error(where + ": 'name' is required");
  v.upstream = get_or<std::string>(d, "upstream", "", where);
  const auto connections = get_or<int>(d, "upstream_connections", 4, where);
  if (connections < 1 || connections > 64) {
    throw Error(where + ": 'upstream_connections' must be between 1 and 64");
  }
  v.upstream_connections = static_cast<unsigned>(connections);
  // With an upstream the image is optional: it names the file verification compares against.
  if (image.empty() && v.upstream.empty())
    throw Error(where + ": 'image' or 'upstream' is required");
  if (!image.empty()) {
    v.image =
        std::filesystem::path(image).is_absolute() ? std::filesystem::path(image) : base / image;
  }
  v.export_name = get_or<std::string>(d, "export", v.vdisk, where);
  v.read_only = get_or<bool>(d, "read_only", false, where);
  return v;
}

// {"file": "x.so", "args": {"key": "value", "n": 3}}: values are strings, numbers or booleans,
// passed to the policy or filter as text; args arrive in key order (JSON objects are unordered).
PluginConfig parse_plugin(const json& p, const std::filesystem::path& base,
                          const std::string& where, const char* noun) {
  if (!p.is_object()) throw Error(fmt::format("{}: a {} must be an object", where, noun));
  check_keys(p, {"file", "args"}, where);
  PluginConfig c;
  const auto file = get_or<std::string>(p, "file", "", where);
  if (file.empty()) throw Error(where + ": 'file' is required");
  c.file = std::filesystem::path(file).is_absolute() ? std::filesystem::path(file) : base / file;
  if (p.contains("args")) {
    if (!p["args"].is_object()) throw Error(where + ": 'args' must be an object");
    for (const auto& [key, value] : p["args"].items()) {
      if (value.is_string()) {
        c.args.emplace_back(key, value.get<std::string>());
      } else if (value.is_number() || value.is_boolean()) {
        c.args.emplace_back(key, value.dump());
      } else {
        throw Error(fmt::format("{}: arg '{}' must be a string, number or boolean", where, key));
      }
    }
  }
  return c;
}

}  // namespace

void parse_tcp_address(const std::string& spec, std::string& host, std::uint16_t& port) {
  std::string port_text = spec;
  host = "127.0.0.1";
  if (const auto colon = spec.rfind(':'); colon != std::string::npos) {
    host = spec.substr(0, colon);
    port_text = spec.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
  }
  unsigned value = 0;
  const auto* end = port_text.data() + port_text.size();
  const auto [ptr, ec] = std::from_chars(port_text.data(), end, value);
  if (ec != std::errc{} || ptr != end || value == 0 || value > 65535) {
    throw Error(
        fmt::format("bad TCP address '{}': expected [HOST:]PORT with PORT in 1..65535", spec));
  }
  port = static_cast<std::uint16_t>(value);
}

mode_t parse_socket_mode(const std::string& text) {
  unsigned value = 0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value, 8);
  if (text.empty() || ec != std::errc{} || ptr != end || value > 0777) {
    throw Error(fmt::format("bad socket mode '{}': expected octal permissions such as 0660", text));
  }
  return static_cast<mode_t>(value);
}

ServeConfig parse_serve_config(std::string_view text, const std::filesystem::path& base_dir) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(fmt::format("config is not valid JSON: {}", e.what()));
  }
  const std::string where = "config";
  if (!root.is_object()) throw Error("config: the top level must be a JSON object");
  check_keys(root,
             {"socket", "socket_mode", "tcp", "tagging", "direct_io", "record", "vms", "vdisks",
              "policies", "policy_tick_ms", "cache", "filters"},
             where);
  ServeConfig c;
  if (auto s = get_or<std::string>(root, "socket", "", where); !s.empty()) {
    c.server.unix_socket =
        std::filesystem::path(s).is_absolute() ? std::filesystem::path(s) : base_dir / s;
  }
  if (auto m = get_or<std::string>(root, "socket_mode", "", where); !m.empty()) {
    c.server.socket_mode = parse_socket_mode(m);
  }
  if (auto t = get_or<std::string>(root, "tcp", "", where); !t.empty()) {
    parse_tcp_address(t, c.server.tcp_host, c.server.tcp_port);
  }
  c.server.tagging = get_or<bool>(root, "tagging", true, where);
  c.server.direct_io = get_or<bool>(root, "direct_io", true, where);
  if (auto r = get_or<std::string>(root, "record", "", where); !r.empty()) {
    c.record = std::filesystem::path(r).is_absolute() ? std::filesystem::path(r) : base_dir / r;
  }
  if (root.contains("cache")) c.cache = root["cache"].dump();
  if (root.contains("vms")) {
    if (!root["vms"].is_array()) throw Error("config: 'vms' must be an array");
    std::size_t i = 0;
    for (const auto& vm : root["vms"]) {
      const std::string vwhere = fmt::format("config vms[{}]", i++);
      if (!vm.is_object()) throw Error(vwhere + ": must be an object");
      check_keys(vm, {"name", "vdisks"}, vwhere);
      const auto name = get_or<std::string>(vm, "name", "", vwhere);
      if (name.empty()) throw Error(vwhere + ": 'name' is required");
      if (!vm.contains("vdisks") || !vm["vdisks"].is_array()) {
        throw Error(vwhere + ": 'vdisks' must be an array");
      }
      std::size_t j = 0;
      for (const auto& d : vm["vdisks"]) {
        c.server.vdisks.push_back(
            parse_vdisk(d, name, base_dir, fmt::format("{} vdisks[{}]", vwhere, j++)));
      }
    }
  }
  // Vdisks without a VM: the VM is identified from the connecting QEMU.
  if (root.contains("vdisks")) {
    if (!root["vdisks"].is_array()) throw Error("config: 'vdisks' must be an array");
    std::size_t j = 0;
    for (const auto& d : root["vdisks"]) {
      c.server.vdisks.push_back(
          parse_vdisk(d, "", base_dir, fmt::format("config vdisks[{}]", j++)));
    }
  }
  if (c.server.vdisks.empty()) throw Error("config: no vdisks listed (under 'vms' or 'vdisks')");
  if (root.contains("policies")) {
    if (!root["policies"].is_array()) throw Error("config: 'policies' must be an array");
    std::size_t k = 0;
    for (const auto& p : root["policies"]) {
      c.policies.push_back(
          parse_plugin(p, base_dir, fmt::format("config policies[{}]", k++), "policy"));
    }
  }
  if (root.contains("filters")) {
    if (!root["filters"].is_array()) throw Error("config: 'filters' must be an array");
    std::size_t k = 0;
    for (const auto& f : root["filters"]) {
      c.filters.push_back(
          parse_plugin(f, base_dir, fmt::format("config filters[{}]", k++), "filter"));
    }
  }
  const auto tick = get_or<std::int64_t>(root, "policy_tick_ms", 1000, where);
  if (tick < 1 || tick > 3'600'000) {
    throw Error("config: 'policy_tick_ms' must be between 1 and 3600000");
  }
  c.policy_tick_ms = static_cast<std::uint64_t>(tick);
  return c;
}

ServeConfig load_serve_config(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw Error(fmt::format("cannot read config file {}", file.string()));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  try {
    return parse_serve_config(text, std::filesystem::absolute(file).parent_path());
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", file.string(), e.what()));
  }
}

}  // namespace v2p::vfilter
