// `v2p map`: builds the V2P map from recorded stream files (or loads a snapshot, or both) and
// prints it, as a table or as JSON; optionally saves a snapshot for the next run.
#include <fmt/core.h>

#include <limits>
#include <nlohmann/json.hpp>

#include "agent/agent_client.hpp"
#include "cli/agent_queries.hpp"
#include "cli/subcommand.hpp"
#include "common/error.hpp"
#include "correlator/map_source.hpp"
#include "correlator/snapshot.hpp"

namespace v2p::cli {
namespace {

struct MapOptions {
  correlator::MapSource source;
  std::string vm, vdisk;
  bool json = false;
  std::string save_snapshot;
  std::string agent = agent::kDefaultQuerySocket;
  std::uint64_t offset = 0;
  std::uint64_t length = std::numeric_limits<std::uint64_t>::max();
};

std::string dev(DeviceId d) {
  return fmt::format("{}:{}", d.major(), d.minor());
}

nlohmann::json stats_json(const correlator::Stats& s) {
  return {{"records", s.records},
          {"events", s.events},
          {"joined_exact", s.joined_exact},
          {"joined_window", s.joined_window},
          {"unattributed", s.unattributed},
          {"lost_events", s.lost_events},
          {"incomplete_requests", s.incomplete_requests},
          {"ambiguous_reads", s.ambiguous_reads},
          {"trims", s.trims}};
}

int run_map(const MapOptions& o) {
  if (o.source.streams.empty() && !o.source.snapshot) {
    if (!o.save_snapshot.empty()) throw Error("--save-snapshot needs --stream or --snapshot");
    return agent_map({o.agent, o.json}, o.vm, o.vdisk, o.offset, o.length);
  }
  const auto corr = correlator::load_map(o.source);
  const auto keys = correlator::select_vdisks(*corr, o.vm, o.vdisk);
  if (!o.save_snapshot.empty()) correlator::save_snapshot(*corr, o.save_snapshot);
  const auto& map = corr->map();
  if (o.json) {
    nlohmann::json out{{"vdisks", nlohmann::json::array()}, {"stats", stats_json(corr->stats())}};
    for (const auto key : keys) {
      const auto d = corr->vdisk(key);
      nlohmann::json v{{"vm_id", key.vm.value()},           {"vdisk_id", key.vdisk.value()},
                       {"vm", d ? d->vm_name : ""},         {"vdisk", d ? d->vdisk_name : ""},
                       {"image", d ? d->image_path : ""},   {"mapped_bytes", map.mapped_bytes(key)},
                       {"extents", nlohmann::json::array()}};
      for (const auto& e : map.extents(key)) {
        v["extents"].push_back({{"voffset", e.voffset.value()},
                                {"length", e.length},
                                {"device", dev(e.device)},
                                {"sector", e.sector.value()},
                                {"generation", e.generation},
                                {"confidence", e.confidence},
                                {"last_seen_ns", e.last_seen_ns}});
      }
      out["vdisks"].push_back(std::move(v));
    }
    fmt::print("{}\n", out.dump(2));
    return 0;
  }
  const auto s = corr->stats();
  fmt::print("records {}  bios {}  joined {} exact + {} by window  unattributed {}  lost {}\n",
             s.records, s.events, s.joined_exact, s.joined_window, s.unattributed, s.lost_events);
  for (const auto key : keys) {
    const auto extents = map.extents(key);
    fmt::print("\n{} ({} extents, {} bytes mapped)\n", correlator::vdisk_label(*corr, key),
               extents.size(), map.mapped_bytes(key));
    fmt::print("  {:>14}  {:>12}  {:>8}  {:>14}  {:>4}  {:>5}\n", "voffset", "length", "device",
               "sector", "gen", "conf");
    for (const auto& e : extents) {
      fmt::print("  {:>#14x}  {:>12}  {:>8}  {:>14}  {:>4}  {:>5.3f}\n", e.voffset.value(),
                 e.length, dev(e.device), e.sector.value(), e.generation, e.confidence);
    }
  }
  return 0;
}

void add_source_options(CLI::App& app, correlator::MapSource& s) {
  app.add_option("--stream", s.streams, "Recorded v2p stream files (vfilter records, probe events)")
      ->check(CLI::ExistingFile);
  app.add_option("--snapshot", s.snapshot, "Map snapshot to start from (streams replay after it)")
      ->check(CLI::ExistingFile);
  app.add_option("--backend", s.backends,
                 "Process id of an opaque upstream backend (completion-window join)");
}

const Register kRegister{
    {"map", "Build the V2P map from recorded streams or a snapshot and print it",
     [](CLI::App& app) {
       auto o = std::make_shared<MapOptions>();
       add_source_options(app, o->source);
       app.add_option("--vm", o->vm, "Only this VM (name or id)");
       app.add_option("--vdisk", o->vdisk, "Only this vdisk (name or id)");
       app.add_flag("--json", o->json, "Print JSON");
       app.add_option("--agent", o->agent,
                      "The agent's query socket, asked when neither --stream nor --snapshot is "
                      "given (default /run/v2p/agent.sock)");
       app.add_option("--offset", o->offset, "Agent mode: first vdisk byte to show");
       app.add_option("--length", o->length, "Agent mode: bytes to show");
       app.add_option("--save-snapshot", o->save_snapshot, "Also save the map as a snapshot file");
       return [o] { return run_map(*o); };
     }}};

}  // namespace
}  // namespace v2p::cli
