#include "ec/config.hpp"

#include <nlohmann/json.hpp>

#include <fstream>
#include <set>
#include <sstream>

#include "common/error.hpp"
#include "ec/coder.hpp"

namespace v2p::ec {
namespace {

using nlohmann::json;

Layout layout_from(const json& j, const std::string& where) {
  if (j.is_string()) return parse_layout(j.get<std::string>());
  if (j.is_object() && j.contains("k") && j.contains("m")) {
    return {j.at("k").get<int>(), j.at("m").get<int>()};
  }
  throw Error(where + ": a layout is \"k+m\" or {\"k\": K, \"m\": M}");
}

}  // namespace

Layout parse_layout(const std::string& text) {
  int k = 0, m = 0;
  char plus = 0, extra = 0;
  std::istringstream in(text);
  if (!(in >> k >> plus >> m) || plus != '+' || (in >> extra)) {
    throw Error("layout '" + text + "' is not k+m (for example 4+2)");
  }
  return {k, m};
}

Layout PoolConfig::layout_for(VdiskKey key) const {
  if (auto it = vdisk_layouts.find({key.vm.value(), key.vdisk.value()});
      it != vdisk_layouts.end()) {
    return it->second;
  }
  if (auto it = vm_layouts.find(key.vm.value()); it != vm_layouts.end()) return it->second;
  return default_layout;
}

void PoolConfig::validate() const {
  if (metadata_dir.empty()) throw Error("the ec pool needs a metadata directory");
  if (stores.empty()) throw Error("the ec pool needs at least one store");
  std::set<std::uint32_t> ids;
  for (const auto& s : stores) {
    if (!ids.insert(s.id).second)
      throw Error("store id " + std::to_string(s.id) + " is used twice");
    if (s.path.empty()) throw Error("store " + std::to_string(s.id) + " has no path");
  }
  auto check = [](const Layout& l) { Coder probe(l.k, l.m); };
  check(default_layout);
  for (const auto& [vm, l] : vm_layouts) check(l);
  for (const auto& [vd, l] : vdisk_layouts) check(l);
  if (container_bytes < (1U << 20) || container_bytes > (16U << 20)) {
    throw Error("container_bytes must be between 1 MiB and 16 MiB");
  }
  if (block_bytes < 512 || block_bytes > container_bytes || block_bytes % 512 != 0) {
    throw Error("block_bytes must be a multiple of 512 between 512 and container_bytes");
  }
  if (io_threads < 1 || io_threads > 256) throw Error("io_threads must be between 1 and 256");
}

PoolConfig parse_config(const std::string& text, const std::string& origin) {
  PoolConfig c;
  try {
    const json j = json::parse(text);
    c.metadata_dir = j.at("metadata").get<std::string>();
    for (const auto& s : j.at("stores")) {
      c.stores.push_back({s.at("id").get<std::uint32_t>(), s.at("path").get<std::string>()});
    }
    if (j.contains("layout")) c.default_layout = layout_from(j["layout"], origin + ": layout");
    if (j.contains("vms")) {
      for (const auto& [vm, v] : j["vms"].items()) {
        const auto id = static_cast<std::uint32_t>(std::stoul(vm));
        if (v.contains("layout"))
          c.vm_layouts[id] = layout_from(v["layout"], origin + ": vm " + vm);
        if (v.contains("vdisks")) {
          for (const auto& [vd, l] : v["vdisks"].items()) {
            c.vdisk_layouts[{id, static_cast<std::uint32_t>(std::stoul(vd))}] =
                layout_from(l, origin + ": vm " + vm + " vdisk " + vd);
          }
        }
      }
    }
    c.container_bytes = j.value("container_bytes", c.container_bytes);
    c.block_bytes = j.value("block_bytes", c.block_bytes);
    c.allow_shared_domains = j.value("allow_shared_domains", false);
    c.hedge_delay = std::chrono::milliseconds(j.value("hedge_ms", c.hedge_delay.count()));
    c.io_threads = j.value("io_threads", c.io_threads);
  } catch (const json::exception& e) {
    throw Error(origin + ": " + e.what());
  } catch (const std::logic_error& e) {  // stoul on a key that is not a number
    throw Error(origin + ": VM and vdisk keys must be numbers (" + e.what() + ")");
  }
  c.validate();
  return c;
}

PoolConfig load_config(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw Error("cannot read " + file.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), file.string());
}

}  // namespace v2p::ec
