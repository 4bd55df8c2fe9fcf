#include "cli/agent_queries.hpp"

#include <fmt/core.h>

#include "agent/agent_client.hpp"
#include "correlator/map_source.hpp"

namespace v2p::cli {

using nlohmann::json;

int agent_map(const AgentQuery& q, const std::string& vm, const std::string& vdisk,
              std::uint64_t offset, std::uint64_t length) {
  std::vector<std::string> vms;
  if (vm.empty()) {
    // Held in a local: a range-for over a temporary's member would read a destroyed object.
    const auto known = agent::query_agent(q.socket, {{"op", "vms"}});
    for (const auto& v : known["vms"]) vms.push_back(v["vm"].get<std::string>());
  } else {
    vms.push_back(vm);
  }
  json out{{"vdisks", json::array()}};
  for (const auto& name : vms) {
    json request{{"op", "map"}, {"vm", name}, {"offset", offset}, {"length", length}};
    if (!vdisk.empty()) request["vdisk"] = vdisk;
    const auto answer = agent::query_agent(q.socket, request);
    for (const auto& v : answer["vdisks"]) out["vdisks"].push_back(v);
  }
  out["stats"] = agent::query_agent(q.socket, {{"op", "stats"}})["correlator"];
  if (q.json) {
    fmt::print("{}\n", out.dump(2));
    return 0;
  }
  for (const auto& v : out["vdisks"]) {
    fmt::print("\n{}/{} ({} extents{}, {} bytes mapped)\n", v["vm"].get<std::string>(),
               v["vdisk"].get<std::string>(), v["extents"].size(),
               v["truncated"].get<bool>() ? " shown, more follow" : "",
               v["mapped_bytes"].get<std::uint64_t>());
    fmt::print("  {:>14}  {:>12}  {:>8}  {:>14}  {:>4}  {:>5}\n", "voffset", "length", "device",
               "sector", "gen", "conf");
    for (const auto& e : v["extents"]) {
      fmt::print("  {:>#14x}  {:>12}  {:>8}  {:>14}  {:>4}  {:>5.3f}\n",
                 e["voffset"].get<std::uint64_t>(), e["length"].get<std::uint64_t>(),
                 e["device"].get<std::string>(), e["sector"].get<std::uint64_t>(),
                 e["generation"].get<std::uint64_t>(), e["confidence"].get<double>());
    }
  }
  return 0;
}

int agent_whose(const AgentQuery& q, const std::string& device, std::uint64_t sector) {
  const DeviceId dev = correlator::parse_device(device);
  const auto a =
      agent::query_agent(q.socket, {{"op", "whose"},
                                    {"device", fmt::format("{}:{}", dev.major(), dev.minor())},
                                    {"sector", sector}});
  if (q.json) fmt::print("{}\n", a.dump(2));
  if (a["owner"].is_null()) {
    if (!q.json) {
      fmt::print("{}:{} sector {}: no vdisk (unmapped, or file system / other I/O)\n", dev.major(),
                 dev.minor(), sector);
    }
    return 1;
  }
  if (!q.json) {
    const auto& o = a["owner"];
    fmt::print("{}:{} sector {}: {}/{} voffset {:#x}\n", dev.major(), dev.minor(), sector,
               o["vm"].get<std::string>(), o["vdisk"].get<std::string>(),
               o["voffset"].get<std::uint64_t>());
  }
  return 0;
}

int agent_verify(const AgentQuery& q, const std::string& vm, const std::string& vdisk,
                 bool allow_mismatch) {
  json request{{"op", "verify"}, {"vm", vm}};
  if (!vdisk.empty()) request["vdisk"] = vdisk;
  const auto a = agent::query_agent(q.socket, request, 600'000);
  bool exact = true;
  for (const auto& v : a["vdisks"]) {
    exact &= v["bytes_observed"].get<std::uint64_t>() > 0 && v["bytes_wrong"] == 0;
    if (q.json) continue;
    fmt::print(
        "{}/{} against {}: observed {} B, right {} B, wrong {} B: accuracy {:.2f}%, "
        "coverage {:.2f}%\n",
        v["vm"].get<std::string>(), v["vdisk"].get<std::string>(), v["image"].get<std::string>(),
        v["bytes_observed"].get<std::uint64_t>(), v["bytes_right"].get<std::uint64_t>(),
        v["bytes_wrong"].get<std::uint64_t>(), 100.0 * v["accuracy"].get<double>(),
        100.0 * v["coverage"].get<double>());
    for (const auto& m : v["mismatches"]) fmt::print("mismatch: {}\n", m.get<std::string>());
  }
  if (q.json) fmt::print("{}\n", a.dump(2));
  if (!exact && !allow_mismatch) {
    if (!q.json) fmt::print("v2p verify: the map is not 100% accurate\n");
    return 1;
  }
  return 0;
}

}  // namespace v2p::cli
