// `v2p whose DEVICE SECTOR`: which vdisk byte lives at a physical sector, according to the map
// built from recorded streams or a snapshot. Exit 0 when owned, 1 when no vdisk owns it.
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "agent/agent_client.hpp"
#include "cli/agent_queries.hpp"
#include "cli/subcommand.hpp"
#include "correlator/map_source.hpp"

namespace v2p::cli {
namespace {

struct WhoseOptions {
  correlator::MapSource source;
  std::string device;
  std::uint64_t sector = 0;
  std::string agent = agent::kDefaultQuerySocket;
  bool json = false;
};

int run_whose(const WhoseOptions& o) {
  if (o.source.streams.empty() && !o.source.snapshot) {
    return agent_whose({o.agent, o.json}, o.device, o.sector);
  }
  const DeviceId dev = correlator::parse_device(o.device);
  const auto corr = correlator::load_map(o.source);
  const auto owner = corr->map().whose(dev, PhysicalSector{o.sector});
  if (o.json) {
    nlohmann::json out{{"device", fmt::format("{}:{}", dev.major(), dev.minor())},
                       {"sector", o.sector},
                       {"owner", nullptr}};
    if (owner) {
      const auto d = corr->vdisk(owner->vdisk);
      out["owner"] = {{"vm", d ? d->vm_name : ""},
                      {"vdisk", d ? d->vdisk_name : ""},
                      {"voffset", owner->voffset.value()}};
    }
    fmt::print("{}\n", out.dump(2));
    return owner ? 0 : 1;
  }
  if (!owner) {
    fmt::print("{}:{} sector {}: no vdisk (unmapped, or file system / other I/O)\n", dev.major(),
               dev.minor(), o.sector);
    return 1;
  }
  const auto e = corr->map().find(owner->vdisk, owner->voffset);
  fmt::print("{}:{} sector {}: {} voffset {:#x} ({} bytes to the end of its extent{})\n",
             dev.major(), dev.minor(), o.sector, correlator::vdisk_label(*corr, owner->vdisk),
             owner->voffset.value(), owner->length,
             e ? fmt::format(", generation {}, confidence {:.3f}", e->generation, e->confidence)
               : std::string());
  return 0;
}

const Register kRegister{
    {"whose", "Which vdisk byte is stored at a physical sector", [](CLI::App& app) {
       auto o = std::make_shared<WhoseOptions>();
       app.add_option("DEVICE", o->device, "Block device: /dev/loop0 or 7:0")->required();
       app.add_option("SECTOR", o->sector, "512-byte sector on DEVICE")->required();
       app.add_option("--stream", o->source.streams, "Recorded v2p stream files")
           ->check(CLI::ExistingFile);
       app.add_option("--snapshot", o->source.snapshot, "Map snapshot")->check(CLI::ExistingFile);
       app.add_option("--backend", o->source.backends, "Process id of an opaque upstream backend");
       app.add_option("--agent", o->agent,
                      "The agent's query socket, asked when neither --stream nor --snapshot is "
                      "given (default /run/v2p/agent.sock)");
       app.add_flag("--json", o->json, "Print JSON");
       return [o] { return run_whose(*o); };
     }}};

}  // namespace
}  // namespace v2p::cli
