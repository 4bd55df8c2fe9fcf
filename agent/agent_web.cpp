// Agent::http(): what the HTTP server answers (docs/observe.md), on the agent's thread.
// /metrics, the web page and its assets, and the page's JSON: /api/observation, /api/heat,
// /api/region. Anything else is 404.
#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "agent/agent.hpp"
#include "agent/metrics.hpp"
#include "agent/observation_json.hpp"
#include "agent/web_assets.hpp"
#include "common/clock.hpp"

namespace v2p::agent {
namespace {

using nlohmann::json;

constexpr std::uint64_t kRegions = 256;  // per device: a 16 x 16 grid
constexpr double kHeatHalfLifeS = 30;    // brightness halves for every 30 s without I/O seen
constexpr std::size_t kMaxRegionOwners = 200;

HttpAnswer not_found(const std::string& what) {
  return {404, "text/plain; charset=utf-8", what + "\n"};
}

HttpAnswer json_answer(const json& j) {
  return {200, "application/json", j.dump(-1, ' ', false, json::error_handler_t::replace)};
}

std::uint64_t device_sectors(DeviceId d) {
  std::ifstream in(fmt::format("/sys/dev/block/{}:{}/size", d.major(), d.minor()));
  std::uint64_t n = 0;
  in >> n;
  return n;
}

std::optional<DeviceId> parse_device(const HttpParams& p) {
  const auto it = p.find("device");
  if (it == p.end()) return std::nullopt;
  unsigned ma = 0, mi = 0;
  char tail = 0;
  if (std::sscanf(it->second.c_str(), "%u:%u%c", &ma, &mi, &tail) != 2) return std::nullopt;
  return DeviceId::from_major_minor(ma, mi);
}

}  // namespace

HttpAnswer Agent::http(const std::string& path, const HttpParams& params) {
  if (path == "/metrics") return {200, kMetricsContentType, render_metrics(observe())};
  if (const auto* asset = find_web_asset(path)) {
    return {200, asset->content_type, std::string(asset->body)};
  }
  if (path == "/api/observation") {
    json out = json::object();
    add_observation(out, observe());
    return json_answer(out);
  }
  if (path != "/api/heat" && path != "/api/region") {
    return not_found(fmt::format("no such page: {} (try /, /metrics)", path.substr(0, 200)));
  }
  // Devices: the probed ones under the known vdisks, and any the map places data on.
  std::map<DeviceId, std::uint64_t> sizes;
  for (const auto& [key, devs] : vdisk_devices_) {
    for (const auto d : devs) sizes.emplace(d, 0);
  }
  std::vector<std::pair<VdiskKey, std::vector<MappedExtent>>> extents;
  for (const auto key : corr_.map().vdisks()) {
    extents.emplace_back(key, corr_.map().extents(key));
    for (const auto& e : extents.back().second) {
      auto& end = sizes[e.device];
      end = std::max(end, e.sector.value() + (e.length + 511) / 512);
    }
  }
  for (auto& [d, end] : sizes) end = std::max(end, device_sectors(d));
  const auto names = [this](VdiskKey key) {
    const auto d = corr_.vdisk(key);
    return d ? std::pair{d->vm_name, d->vdisk_name} : std::pair{std::string("?"), std::string("?")};
  };
  const auto region_sectors = [](std::uint64_t sectors) {
    return std::max<std::uint64_t>(1, (sectors + kRegions - 1) / kRegions);
  };

  if (path == "/api/heat") {
    const std::uint64_t now = monotonic_ns();
    std::map<std::string, std::size_t> vm_index;
    json vms = json::array();
    struct Cell {
      std::map<std::size_t, std::uint64_t> bytes;  // by vm index
      std::uint64_t last_seen = 0;
    };
    std::map<DeviceId, std::vector<Cell>> grid;
    for (const auto& [d, n] : sizes) grid[d].resize(kRegions);
    for (const auto& [key, list] : extents) {
      const auto [vm, vdisk] = names(key);
      auto [it, fresh] = vm_index.try_emplace(vm, vm_index.size());
      if (fresh) vms.push_back(vm);
      for (const auto& e : list) {
        const std::uint64_t per = region_sectors(sizes[e.device]);
        const std::uint64_t first = e.sector.value();
        const std::uint64_t last = first + (e.length + 511) / 512;  // exclusive
        auto& cells = grid[e.device];
        for (std::uint64_t r = first / per; r < kRegions && r * per < last; ++r) {
          const std::uint64_t lo = std::max(first, r * per), hi = std::min(last, (r + 1) * per);
          cells[r].bytes[it->second] += (hi - lo) * 512;
          cells[r].last_seen = std::max(cells[r].last_seen, e.last_seen_ns);
        }
      }
    }
    json devices = json::array();
    for (const auto& [d, cells] : grid) {
      json owner = json::array(), heat = json::array(), vms_in = json::array();
      for (const auto& c : cells) {
        if (c.bytes.empty()) {
          owner.push_back(-1);
          heat.push_back(0);
          vms_in.push_back(0);
          continue;
        }
        const auto top = std::max_element(c.bytes.begin(), c.bytes.end(),
                                          [](auto& a, auto& b) { return a.second < b.second; });
        owner.push_back(top->first);
        const double age_s =
            now > c.last_seen ? static_cast<double>(now - c.last_seen) * 1e-9 : 0.0;
        heat.push_back(std::round(1000 * std::exp2(-age_s / kHeatHalfLifeS)) / 1000);
        vms_in.push_back(c.bytes.size());
      }
      auto [it, fresh] = device_names_.try_emplace(d.kernel());
      if (fresh) {
        std::ifstream in(fmt::format("/sys/dev/block/{}:{}/uevent", d.major(), d.minor()));
        std::string line;
        while (std::getline(in, line)) {
          if (line.starts_with("DEVNAME=")) it->second = line.substr(8);
        }
      }
      devices.push_back({{"device", fmt::format("{}:{}", d.major(), d.minor())},
                         {"name", it->second},
                         {"sectors", sizes[d]},
                         {"region_sectors", region_sectors(sizes[d])},
                         {"owner", std::move(owner)},
                         {"heat", std::move(heat)},
                         {"owners_in_region", std::move(vms_in)}});
    }
    return json_answer({{"regions", kRegions},
                        {"heat_half_life_s", kHeatHalfLifeS},
                        {"vms", std::move(vms)},
                        {"devices", std::move(devices)}});
  }

  if (path == "/api/region") {
    const auto d = parse_device(params);
    const auto rp = params.find("region");
    std::uint64_t region = kRegions;
    if (rp != params.end()) {
      char* end = nullptr;
      region = std::strtoull(rp->second.c_str(), &end, 10);
      if (end == rp->second.c_str() || *end != '\0') region = kRegions;
    }
    if (!d || region >= kRegions || !sizes.contains(*d)) {
      return not_found("no such region: give device=MAJ:MIN of a probed device and region=0..255");
    }
    const std::uint64_t per = region_sectors(sizes[*d]);
    const std::uint64_t lo = region * per, hi = lo + per;
    json owners = json::array();
    bool truncated = false;
    for (const auto& [key, list] : extents) {
      const auto [vm, vdisk] = names(key);
      for (const auto& e : list) {
        if (e.device != *d) continue;
        const std::uint64_t first = e.sector.value(), last = first + (e.length + 511) / 512;
        if (last <= lo || first >= hi) continue;
        if (owners.size() == kMaxRegionOwners) {
          truncated = true;
          break;
        }
        const std::uint64_t from = std::max(first, lo), to = std::min(last, hi);
        owners.push_back({{"vm", vm},
                          {"vdisk", vdisk},
                          {"voffset", e.voffset.value() + (from - first) * 512},
                          {"length", (to - from) * 512},
                          {"sector", from}});
      }
    }
    return json_answer({{"device", fmt::format("{}:{}", d->major(), d->minor())},
                        {"region", region},
                        {"sector_begin", lo},
                        {"sector_end", hi},
                        {"owners", std::move(owners)},
                        {"truncated", truncated}});
  }
  return not_found(path);  // not reached: both API paths returned above
}

}  // namespace v2p::agent
