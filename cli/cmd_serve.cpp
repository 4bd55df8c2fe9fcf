// `v2p serve`: the vfilter as a standalone NBD server that QEMU attaches vdisks to. One export
// from flags, or any number from a JSON config file (docs/operator-guide.md).
#include <fmt/core.h>
#include <poll.h>

#include <memory>
#include <string>

#include "cli/subcommand.hpp"
#include "common/error.hpp"
#include "common/stop_signal.hpp"
#include "vfilter/config_file.hpp"
#include "vfilter/server.hpp"
#ifdef V2P_HAVE_TIER
#include "cli/tier_options.hpp"
#endif

namespace v2p::cli {
namespace {

struct ServeOptions {
  std::string config;
  std::string image;
  std::string vm;
  std::string vdisk;
  std::string export_name;
  std::string socket;
  std::string socket_mode;
  std::string tcp;
  std::string record;
  bool read_only = false;
  bool no_tagging = false;
  bool no_direct = false;
#ifdef V2P_HAVE_TIER
  TierFlags tier;
#endif
};

vfilter::ServeConfig build_config(const ServeOptions& o) {
  vfilter::ServeConfig c;
  if (!o.config.empty()) {
    if (!o.image.empty()) throw Error("give either --config or --image, not both");
#ifdef V2P_HAVE_TIER
    if (!o.tier.fast.empty()) throw Error("--tier-fast works with --image, not with --config");
#endif
    c = vfilter::load_serve_config(o.config);
  } else {
    if (o.image.empty()) throw Error("nothing to serve: give --image PATH (or --config FILE)");
    vfilter::VdiskConfig v;
    v.vm = o.vm;
    v.vdisk = o.vdisk.empty() ? std::filesystem::path(o.image).stem().string() : o.vdisk;
    v.image = o.image;
    v.export_name = o.export_name;
    v.read_only = o.read_only;
#ifdef V2P_HAVE_TIER
    v.backend = make_tier_backend(o.tier, v.image, v.read_only, !o.no_direct);
#endif
    c.server.vdisks.push_back(v);
  }
  // Flags override the file.
  if (!o.socket.empty()) c.server.unix_socket = o.socket;
  if (!o.socket_mode.empty()) c.server.socket_mode = vfilter::parse_socket_mode(o.socket_mode);
  if (!o.tcp.empty()) vfilter::parse_tcp_address(o.tcp, c.server.tcp_host, c.server.tcp_port);
  if (!o.record.empty()) c.record = o.record;
  if (o.no_tagging) c.server.tagging = false;
  if (o.no_direct) c.server.direct_io = false;
  if (c.server.unix_socket.empty() && c.server.tcp_port == 0) {
    throw Error("no listener: give --socket PATH and/or --tcp [HOST:]PORT");
  }
  return c;
}

int run_serve(const ServeOptions& o) {
  const auto config = build_config(o);
  StopSignal stop;
  std::unique_ptr<vfilter::RecordFileSink> sink;
  if (!config.record.empty()) sink = std::make_unique<vfilter::RecordFileSink>(config.record);
  auto server = vfilter::Server::start(config.server, sink.get());
#ifdef V2P_HAVE_TIER
  const auto tier = start_tier_policy(o.tier, config.server.vdisks);
#endif
  for (const auto& v : config.server.vdisks) {
    fmt::print("v2p serve: export '{}' = {}/{} -> {}{}\n",
               v.export_name.empty() ? v.vdisk : v.export_name,
               v.vm.empty() ? "<vm from peer>" : v.vm, v.vdisk, v.image.string(),
               v.read_only ? " (read-only)" : "");
  }
  if (!config.server.unix_socket.empty()) {
    fmt::print("v2p serve: listening on unix socket {} (mode {:04o})\n",
               config.server.unix_socket.string(), config.server.socket_mode);
  }
  if (config.server.tcp_port != 0) {
    fmt::print("v2p serve: listening on tcp {}:{}\n", config.server.tcp_host, server->tcp_port());
  }
  fmt::print("v2p serve: tagging {}, records {}\n", config.server.tagging ? "on" : "off",
             config.record.empty() ? "not written" : config.record.string());
  // Ready line: tests and scripts wait for it before connecting.
  fmt::print("v2p serve: ready\n");
  while (!stop.requested()) {
    ::poll(nullptr, 0, 200);  // a signal interrupts the sleep; the flag ends the loop
    if (sink) sink->flush();
  }
  server->stop();
  const auto s = server->stats();
  if (sink) sink->flush(true);
  fmt::print(
      "v2p serve: stopped (signal {}): {} connections, {} requests, {} B read, {} B "
      "written, {} errors\n",
      stop.signal(), s.connections, s.requests, s.bytes_read, s.bytes_written, s.errors);
  return 0;
}

const Register kServe{
    {"serve", "Serve vdisk images over NBD through the vfilter (records + tags)",
     [](CLI::App& app) -> std::function<int()> {
       auto o = std::make_shared<ServeOptions>();
       app.add_option("--config", o->config, "JSON file listing VMs and vdisks");
       app.add_option("--image", o->image, "Raw image file or block device");
       app.add_option("--vm", o->vm, "VM name (default: identify the connecting QEMU)");
       app.add_option("--vdisk", o->vdisk, "Vdisk name (default: image stem)");
       app.add_option("--export", o->export_name, "NBD export name (default: the vdisk name)");
       app.add_option("--socket", o->socket, "Unix socket to listen on");
       app.add_option("--socket-mode", o->socket_mode,
                      "Octal permissions of the socket (default 0600)");
       app.add_option("--tcp", o->tcp, "Also listen on TCP [HOST:]PORT");
       app.add_flag("--read-only", o->read_only, "Export read-only");
       app.add_flag("--no-tagging", o->no_tagging, "Do not put slot ids into the ioprio hint bits");
       app.add_flag("--no-direct", o->no_direct, "Buffered I/O, not O_DIRECT");
       app.add_option("--record", o->record, "Write the context records to this v2p stream file");
#ifdef V2P_HAVE_TIER
       add_tier_flags(app, o->tier);
#endif
       return [o] { return run_serve(*o); };
     }}};

}  // namespace
}  // namespace v2p::cli
