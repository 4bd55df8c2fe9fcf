// `v2p status` and `v2p vm list|remove`: what the running agent knows (docs/agent.md).
#include <fmt/core.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "agent/agent_client.hpp"
#include "cli/export_lookup.hpp"
#include "cli/subcommand.hpp"

namespace v2p::cli {
namespace {

using nlohmann::json;

struct StatusOptions {
  std::string agent = agent::kDefaultQuerySocket;
  std::string vm, vdisk, image;
  std::string socket, export_name;  // vm add --socket: the export behind a domain's NBD disk
  bool json = false;
};

void print_vms(const json& vms) {
  if (vms.empty()) fmt::print("no VMs\n");
  for (const auto& v : vms) {
    fmt::print("{}\n", v["vm"].get<std::string>());
    for (const auto& d : v["vdisks"]) {
      fmt::print(
          "  {:<12} {:<9} {:<10} {:>8} extents {:>14} B mapped  {}\n",
          d["vdisk"].get<std::string>(), d["connected"].get<bool>() ? "connected" : "offline",
          d["probed"].get<bool>() ? "probed" : "not-probed", d["extents"].get<std::uint64_t>(),
          d["mapped_bytes"].get<std::uint64_t>(), d["image"].get<std::string>());
    }
  }
}

int run_status(const StatusOptions& o) {
  const auto stats = agent::query_agent(o.agent, {{"op", "stats"}});
  const auto vms = agent::query_agent(o.agent, {{"op", "vms"}})["vms"];
  if (o.json) {
    fmt::print("{}\n", json{{"stats", stats}, {"vms", vms}}.dump(2));
    return 0;
  }
  const auto& a = stats["agent"];
  fmt::print("agent: {}\n", stats["status"].get<std::string>());
  fmt::print("exports {} connected ({} connections ever), queries {} ({} errors, {} deferred)\n",
             a["exports_connected"].get<std::uint64_t>(),
             a["export_connections"].get<std::uint64_t>(), a["queries"].get<std::uint64_t>(),
             a["query_errors"].get<std::uint64_t>(), a["queries_deferred"].get<std::uint64_t>());
  print_vms(vms);
  return 0;
}

int run_vm_list(const StatusOptions& o) {
  const auto vms = agent::query_agent(o.agent, {{"op", "vms"}})["vms"];
  if (o.json) {
    fmt::print("{}\n", vms.dump(2));
  } else {
    print_vms(vms);
  }
  return 0;
}

// Exit codes of vm add/remove, for the libvirt hook (dist/libvirt/hooks/qemu): a socket that is
// not a v2p export and an absent agent must not stop a VM from starting; an agent that answers
// with an error must.
constexpr int kNotAnExport = 3;
constexpr int kNoAgent = 4;

int run_vm_add(StatusOptions o) {
  if (o.socket.empty() == o.image.empty()) throw Error("give either --image or --socket");
  if (!o.socket.empty()) {
    // An empty export name (NBD's default export) is never a v2p export's: exit 3 below.
    const auto found = find_exported_vdisk(std::filesystem::absolute(o.socket), o.export_name);
    if (!found) {
      fmt::print(stderr, "v2p: {} (export {}) is not served by a running `v2p serve`\n", o.socket,
                 o.export_name);
      return kNotAnExport;
    }
    if (!o.vdisk.empty() && o.vdisk != found->vdisk) {
      throw Error(fmt::format("export {} on {} serves vdisk {}, not {}", o.export_name, o.socket,
                              found->vdisk, o.vdisk));
    }
    o.vdisk = found->vdisk;
    o.image = found->image.string();
  }
  if (o.vdisk.empty()) throw Error("--vdisk is required with --image");
  const auto image = std::filesystem::absolute(o.image).string();
  json a;
  try {
    a = agent::query_agent(o.agent,
                           {{"op", "vm_add"}, {"vm", o.vm}, {"vdisk", o.vdisk}, {"image", image}});
  } catch (const agent::AgentUnreachable& e) {
    fmt::print(stderr, "v2p: {}\n", e.what());
    return kNoAgent;
  }
  if (o.json) {
    fmt::print("{}\n", a.dump(2));
  } else {
    fmt::print("vdisk {}/{} added: the agent watches the devices below {}\n", o.vm, o.vdisk, image);
  }
  return 0;
}

int run_vm_remove(const StatusOptions& o) {
  json a;
  try {
    a = agent::query_agent(o.agent, {{"op", "vm_remove"}, {"vm", o.vm}});
  } catch (const agent::AgentUnreachable& e) {
    fmt::print(stderr, "v2p: {}\n", e.what());
    return kNoAgent;
  }
  if (o.json) {
    fmt::print("{}\n", a.dump(2));
  } else {
    fmt::print("vm {} removed: its vdisks' entries are dropped\n", o.vm);
  }
  return 0;
}

void add_common(CLI::App& app, StatusOptions& o) {
  app.add_option("--agent", o.agent, "The agent's query socket (default /run/v2p/agent.sock)");
  app.add_flag("--json", o.json, "Print JSON");
}

const Register kStatus{
    {"status", "What the running v2p agent knows: VMs, vdisks, counters", [](CLI::App& app) {
       auto o = std::make_shared<StatusOptions>();
       add_common(app, *o);
       return [o] { return run_status(*o); };
     }}};

const Register kVm{
    {"vm", "VMs known to the running v2p agent: list, add, remove", [](CLI::App& app) {
       auto o = std::make_shared<StatusOptions>();
       app.require_subcommand(1);
       auto run = std::make_shared<std::function<int()>>();
       CLI::App* list = app.add_subcommand("list", "List the VMs and their vdisks");
       add_common(*list, *o);
       list->callback([o, run] { *run = [o] { return run_vm_list(*o); }; });
       CLI::App* add = app.add_subcommand(
           "add", "Tell the agent about a vdisk before its export runs (probe its devices now)");
       add->add_option("VM", o->vm, "VM name")->required();
       add->add_option("--vdisk", o->vdisk, "Vdisk name (with --socket: the export's)");
       add->add_option("--image", o->image, "The vdisk's image file");
       add->add_option("--socket", o->socket,
                       "Instead of --image: the unix socket of the `v2p serve` exporting it");
       add->add_option("--export", o->export_name, "With --socket: the NBD export name");
       add_common(*add, *o);
       add->callback([o, run] { *run = [o] { return run_vm_add(*o); }; });
       CLI::App* remove = app.add_subcommand(
           "remove", "Forget a VM: drop its vdisks' entries (an export still running re-adds it)");
       remove->add_option("VM", o->vm, "VM name")->required();
       add_common(*remove, *o);
       remove->callback([o, run] { *run = [o] { return run_vm_remove(*o); }; });
       return [run] { return (*run)(); };
     }}};

}  // namespace
}  // namespace v2p::cli
