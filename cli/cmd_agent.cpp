// `v2p agent`: the host service that keeps every VM's map live (docs/agent.md).
#include <fmt/core.h>

#include <algorithm>
#include <filesystem>
#include <memory>

#include "agent/agent.hpp"
#include "agent/agent_config.hpp"
#include "agent/service_notify.hpp"
#include "cli/subcommand.hpp"
#if V2P_HAVE_CLUSTER
#include "cluster/cluster_config.hpp"
#include "cluster/node.hpp"
#endif
#include "common/clock.hpp"
#include "common/error.hpp"
#include "common/stop_signal.hpp"

namespace v2p::cli {
namespace {

struct AgentFlags {
  std::string config;
  std::string socket, ingest_socket, group, socket_mode, state_dir;
  unsigned snapshot_interval_ms = 0;
  bool no_probe = false;
  bool every_bio = false;
  bool no_state = false;
  std::string http;     // "" = the default (127.0.0.1:9391, optional); "off" = none
  std::string cluster;  // cluster configuration (docs/cluster.md)
  std::vector<std::string> attach;
};

int run_agent(const AgentFlags& f) {
  agent::AgentOptions o;
  // /metrics and the web view by default, on loopback. The default address may be taken (a
  // second agent, a test): then the agent runs without it and says so; an address asked for
  // (flag or config) must be bound.
  o.http_listen = agent::kDefaultHttpListen;
  o.http_optional = true;
  const char* kDefaultConfig = "/etc/v2p/agent.json";
  if (!f.config.empty()) {
    agent::load_agent_config(f.config, o);
  } else if (std::filesystem::exists(kDefaultConfig)) {
    agent::load_agent_config(kDefaultConfig, o);
  }
  if (!f.socket.empty()) o.query_socket = f.socket;
  if (!f.ingest_socket.empty()) o.ingest_socket = f.ingest_socket;
  if (!f.group.empty()) o.group = f.group;
  if (!f.socket_mode.empty()) {
    std::size_t used = 0;
    const auto mode = std::stoul(f.socket_mode, &used, 8);
    if (used != f.socket_mode.size() || mode > 0777 || (mode & 0600) != 0600) {
      throw Error(
          "--socket-mode must be an octal mode such as 0660 that lets the owner read "
          "and write");
    }
    o.socket_mode = static_cast<unsigned>(mode);
  }
  if (!f.state_dir.empty()) o.state_dir = f.state_dir;
  if (f.no_state) o.state_dir.clear();
  if (f.snapshot_interval_ms != 0) o.snapshot_interval_ms = f.snapshot_interval_ms;
  if (f.no_probe) o.probe = false;
  if (f.every_bio) o.every_bio = true;
  if (f.http == "off") {
    o.http_listen.clear();
  } else if (!f.http.empty()) {
    o.http_listen = f.http;
    o.http_optional = false;
  }
  if (!f.attach.empty()) o.attach_vms = f.attach;
  o.log = [](std::string_view line) { fmt::print("v2p agent: {}\n", line); };

  StopSignal stop;
  agent::ServiceNotify notify;
  agent::Agent a(o);
#if V2P_HAVE_CLUSTER
  // The cluster side runs on threads of its own: the loop below never waits for etcd or a peer.
  std::unique_ptr<cluster::Node> node;
  if (!f.cluster.empty()) {
    node = std::make_unique<cluster::Node>(
        cluster::load_cluster_config(f.cluster),
        [](const std::string& l) { fmt::print("v2p agent: cluster: {}\n", l); });
    fmt::print("v2p agent: cluster '{}' as host {}\n", node->config().cluster, node->config().host);
  }
#else
  if (!f.cluster.empty()) throw Error("--cluster: this v2p was built without the cluster part");
#endif
  fmt::print("v2p agent: queries on {}, ingest on {} (mode {:04o}{}), state in {}{}\n",
             o.query_socket.string(), o.ingest_socket.string(), o.socket_mode,
             o.group.empty() ? "" : ", group " + o.group,
             o.state_dir.empty() ? "nowhere" : o.state_dir.string(),
             o.probe ? "" : " (no probe: the map is not fed)");
  fmt::print("v2p agent: ready\n");  // tests and scripts wait for this line
  notify.ready(a.status_line());
  std::uint64_t next_status = 0;
  while (!stop.requested()) {
    a.round(50);
    const std::uint64_t now = monotonic_ns();
    notify.watchdog(now);
    if (now >= next_status) {
      notify.status(a.status_line());
      next_status = now + 2'000'000'000;
#if V2P_HAVE_CLUSTER
      if (node) {
        std::vector<std::string> vms, images;
        for (const auto& d : a.correlator().vdisk_declarations()) {
          if (std::find(vms.begin(), vms.end(), d.vm_name) == vms.end()) vms.push_back(d.vm_name);
          images.push_back(d.image_path);
        }
        node->set_vms(std::move(vms), std::move(images));
      }
#endif
    }
  }
  notify.stopping();
  const auto s = a.stats();
  fmt::print("v2p agent: stopped (signal {}): {} records ({} lost by exports), {} queries\n",
             stop.signal(), s.records_ingested, s.records_lost, s.queries);
  return 0;
}

const Register kAgent{
    {"agent", "The host service: live map of every VM, query socket, persistence",
     [](CLI::App& app) {
       auto f = std::make_shared<AgentFlags>();
       app.add_option("--config", f->config, "JSON config file (default /etc/v2p/agent.json)");
       app.add_option("--socket", f->socket, "Query socket (default /run/v2p/agent.sock)");
       app.add_option("--ingest-socket", f->ingest_socket,
                      "Socket the exports stream to (default /run/v2p/ingest.sock)");
       app.add_option("--group", f->group, "Group owning both sockets");
       app.add_option("--socket-mode", f->socket_mode, "Octal mode of both sockets (default 0660)");
       app.add_option("--state-dir", f->state_dir, "Snapshot and event log (default /var/lib/v2p)");
       app.add_flag("--no-state", f->no_state, "Persist nothing");
       app.add_option("--snapshot-interval-ms", f->snapshot_interval_ms,
                      "How often the map is saved (default 10000)")
           ->check(CLI::Range(100, 86'400'000));
       app.add_flag("--no-probe", f->no_probe, "Do not attach the eBPF probe (queries only)");
       app.add_flag("--every-bio", f->every_bio,
                    "Have the probe send every bio (debugging; default: only what the map does "
                    "not know, and every bio of opaque exports' backends)");
       app.add_option("--http", f->http,
                      "HOST:PORT of /metrics and the web view (default 127.0.0.1:9391; off: none)");
       app.add_option("--cluster", f->cluster,
                      "Join the cluster this file describes (docs/cluster.md)");
       app.add_option("--attach", f->attach,
                      "Attach to this VM's QEMU by itself (its -name, or qemu-PID; \"*\": every "
                      "QEMU), repeatable (docs/attach.md)");
       return [f] { return run_agent(*f); };
     }}};

}  // namespace
}  // namespace v2p::cli
