// The answers to the query protocol's requests (docs/agent.md), from the agent's own thread.
#include <fmt/core.h>

#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "agent/agent.hpp"
#include "agent/observation_json.hpp"
#include "common/error.hpp"
#include "correlator/map_source.hpp"
#include "correlator/verify.hpp"

namespace v2p::agent {
namespace {

using nlohmann::json;

std::string dev(DeviceId d) {
  return fmt::format("{}:{}", d.major(), d.minor());
}

json stats_json(const correlator::Stats& s) {
  return {{"records", s.records},
          {"events", s.events},
          {"joined_exact", s.joined_exact},
          {"joined_window", s.joined_window},
          {"unattributed", s.unattributed},
          {"metadata", s.metadata},
          {"pending_records", s.pending_records},
          {"pending_events", s.pending_events},
          {"lost_events", s.lost_events},
          {"incomplete_requests", s.incomplete_requests},
          {"ambiguous_reads", s.ambiguous_reads},
          {"trims", s.trims}};
}

json agent_json(const AgentStats& s) {
  return {{"rounds", s.rounds},
          {"exports_connected", s.exports_connected},
          {"export_connections", s.export_connections},
          {"slot_tables_granted", s.slot_tables_granted},
          {"ingest_errors", s.ingest_errors},
          {"records_ingested", s.records_ingested},
          {"records_lost", s.records_lost},
          {"events_ignored", s.events_ignored},
          {"vdisks_skipped", s.vdisks_skipped},
          {"vdisks_dropped", s.vdisks_dropped},
          {"query_clients", s.query_clients},
          {"queries", s.queries},
          {"query_errors", s.query_errors},
          {"queries_deferred", s.queries_deferred},
          {"clients_refused", s.clients_refused},
          {"clients_dropped", s.clients_dropped},
          {"snapshots_saved", s.snapshots_saved},
          {"restored_extents", s.restored_extents},
          {"log_records_replayed", s.log_records_replayed},
          {"log_bad_tails", s.log_bad_tails},
          {"log_write_errors", s.log_write_errors}};
}

}  // namespace

std::string Agent::answer(std::string_view line) {
  json out{{"v", kQueryProtocolVersion}, {"ok", true}};
  try {
    const Request r = parse_request(line);
    if (!r.id.empty()) out["id"] = r.id;
    out["op"] = to_string(r.op);
    const auto& map = corr_.map();
    // The vdisks a query may name: those with a connected export or extents in the map.
    const auto live = [&](VdiskKey key) {
      const auto it = vdisk_exports_.find(key);
      return (it != vdisk_exports_.end() && it->second > 0) || map.mapped_bytes(key) > 0;
    };
    const auto select = [&](const std::string& vm, const std::string& vdisk) {
      std::vector<std::pair<std::string, VdiskKey>> found;
      std::set<std::string> vms;
      for (const auto& [names, key] : vdisk_ids_) {
        if (!live(key)) continue;
        vms.insert(names.first);
        if (names.first != vm) continue;
        if (vdisk.empty() || names.second == vdisk) found.emplace_back(names.second, key);
      }
      if (!vms.contains(vm)) {
        std::string known;
        for (const auto& v : vms) known += (known.empty() ? "" : ", ") + v;
        throw Error(fmt::format("unknown vm '{}' (the agent knows: {})", vm,
                                known.empty() ? "none" : known));
      }
      if (found.empty()) throw Error(fmt::format("vm '{}' has no vdisk '{}'", vm, vdisk));
      return found;
    };
    switch (r.op) {
      case QueryOp::kVms: {
        json vms = json::object();
        for (const auto& [names, key] : vdisk_ids_) {
          if (!live(key)) continue;
          const auto d = corr_.vdisk(key);
          const auto conn = vdisk_exports_.find(key);
          vms[names.first].push_back(
              {{"vdisk", names.second},
               {"vm_id", key.vm.value()},
               {"vdisk_id", key.vdisk.value()},
               {"image", d ? d->image_path : ""},
               {"connected",
                conn != vdisk_exports_.end() && conn->second > (added_.contains(key) ? 1u : 0u)},
               {"probed", o_.probe && vdisk_devices_.contains(key)},
               {"added", added_.contains(key)},
               {"extents", map.extents(key).size()},
               {"mapped_bytes", map.mapped_bytes(key)}});
        }
        out["vms"] = json::array();
        for (auto& [name, vdisks] : vms.items()) {
          out["vms"].push_back({{"vm", name}, {"vdisks", std::move(vdisks)}});
        }
        break;
      }
      case QueryOp::kMap: {
        out["vdisks"] = json::array();
        for (const auto& [name, key] : select(r.vm, r.vdisk)) {
          const auto len = std::min(r.length, std::numeric_limits<std::uint64_t>::max() - r.offset);
          const auto extents = map.lookup(key, VirtualOffset{r.offset}, len);
          json v{{"vm", r.vm},
                 {"vdisk", name},
                 {"mapped_bytes", map.mapped_bytes(key)},
                 {"truncated", extents.size() > r.limit},
                 {"extents", json::array()}};
          const auto d = corr_.vdisk(key);
          v["image"] = d ? d->image_path : "";
          for (std::size_t i = 0; i < extents.size() && i < r.limit; ++i) {
            const auto& e = extents[i];
            v["extents"].push_back({{"voffset", e.voffset.value()},
                                    {"length", e.length},
                                    {"device", dev(e.device)},
                                    {"sector", e.sector.value()},
                                    {"generation", e.generation},
                                    {"confidence", e.confidence}});
          }
          out["vdisks"].push_back(std::move(v));
        }
        break;
      }
      case QueryOp::kWhose: {
        const DeviceId device = DeviceId::from_kernel(r.device);
        out["device"] = dev(device);
        out["sector"] = r.sector;
        const auto owner = map.whose(device, PhysicalSector{r.sector});
        if (!owner) {
          out["owner"] = nullptr;
          break;
        }
        const auto d = corr_.vdisk(owner->vdisk);
        out["owner"] = {{"vm", d ? d->vm_name : ""},
                        {"vdisk", d ? d->vdisk_name : ""},
                        {"voffset", owner->voffset.value()}};
        break;
      }
      case QueryOp::kVerify: {
        out["vdisks"] = json::array();
        for (const auto& [name, key] : select(r.vm, r.vdisk)) {
          const auto d = corr_.vdisk(key);
          if (!d || d->image_path.empty()) {
            throw Error(fmt::format("vdisk {}/{}: no image path known", r.vm, name));
          }
          const auto report = correlator::verify_against_fiemap(
              map, key, d->image_path, correlator::filesystem_device(d->image_path));
          json mism = json::array();
          for (const auto& m : report.mismatches) mism.push_back(m);
          out["vdisks"].push_back({{"vm", r.vm},
                                   {"vdisk", name},
                                   {"image", d->image_path},
                                   {"bytes_observed", report.bytes_observed},
                                   {"bytes_right", report.bytes_right},
                                   {"bytes_wrong", report.bytes_wrong},
                                   {"bytes_allocated", report.bytes_allocated},
                                   {"accuracy", report.accuracy()},
                                   {"coverage", report.coverage()},
                                   {"mean_confidence", report.mean_confidence()},
                                   {"mismatches", std::move(mism)}});
        }
        break;
      }
      case QueryOp::kStats:
        out["correlator"] = stats_json(corr_.stats());
        out["agent"] = agent_json(stats());
        out["extents"] = map.extent_count();
        out["map_memory_bytes"] = map.memory_bytes();
        out["devices_probed"] = devices_.device_count();
        if (const pfilter::Probe* p = devices_.probe()) {
          // What the kernel counted instead of sending (docs/pfilter.md): tagged repeats are
          // suppressed - untagged.
          out["probe"] = {{"every_bio", !p->suppressing()},
                          {"events", p->committed_events()},
                          {"lost_events", p->lost_events()},
                          {"suppressed_bios", p->suppressed_bios()},
                          {"untagged_bios", p->untagged_bios()}};
        }
        out["status"] = status_line();
        add_observation(out, observe());
        break;
      case QueryOp::kVmAdd:
        add_vdisk(r.vm, r.vdisk, r.image);
        out["added"] = r.vm + "/" + r.vdisk;
        break;
      case QueryOp::kVmRemove:
        select(r.vm, "");
        remove_vm(r.vm);
        out["removed"] = r.vm;
        break;
    }
  } catch (const std::exception& e) {
    ++stats_.query_errors;
    out = {{"v", kQueryProtocolVersion}, {"ok", false}, {"error", e.what()}};
  }
  return out.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace v2p::agent
