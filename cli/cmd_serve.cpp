// `v2p serve`: the vfilter as a standalone NBD server that QEMU attaches vdisks to. One export
// from flags, or any number from a JSON config file (docs/operator-guide.md).
#include <fmt/core.h>
#include <poll.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/subcommand.hpp"
#include "common/error.hpp"
#include "common/stop_signal.hpp"
#include "vfilter/agent_sink.hpp"
#include "vfilter/config_file.hpp"
#include "vfilter/server.hpp"
#if V2P_HAVE_POLICY_HOST
#include "policy/host/policy_host.hpp"
#include "policy/host/record_tee.hpp"
#endif

#include "vfilter/stack_builder.hpp"

#ifdef V2P_HAVE_CACHE
#include "policy/cache/cache_config.hpp"
#endif
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
  std::string tls_creds;
  std::string vhost_user;
  std::string record;
  std::string agent;  // the v2p agent's ingest socket (docs/agent.md)
  bool no_export_latency = false;
  bool read_only = false;
  bool no_tagging = false;
  bool no_direct = false;
  // --policy FILE and --policy-arg KEY=VALUE in command-line order: each arg belongs to the
  // --policy before it.
  std::vector<vfilter::PolicyConfig> policies;
  std::uint64_t policy_tick_ms = 0;  // 0 = the config file's (default 1000)
  // --filter FILE and --filter-arg KEY=VALUE, paired the same way.
  std::vector<vfilter::FilterConfig> filters;
  bool file_backend = false;
  // Flash cache (docs/cache.md).
  std::string cache;
  std::string cache_size;
  std::string cache_block;
  std::string cache_mode;
  std::vector<std::string> cache_quotas;
  std::vector<std::string> cache_priorities;
#ifdef V2P_HAVE_TIER
  TierFlags tier;
#endif
};

// Rebuilds the interleaving of --policy and --policy-arg (or --filter and --filter-arg) from
// CLI11's parse order.
void collect_plugins(const CLI::App& app, const std::string& flag,
                     std::vector<vfilter::PluginConfig>& out) {
  const CLI::Option* file_opt = app.get_option(flag);
  const CLI::Option* arg_opt = app.get_option(flag + "-arg");
  const auto& files = file_opt->results();
  const auto& args = arg_opt->results();
  std::size_t next_file = 0;
  std::size_t next_arg = 0;
  for (const CLI::Option* opt : app.parse_order()) {
    if (opt == file_opt && next_file < files.size()) {
      out.push_back({files[next_file++], {}});
    } else if (opt == arg_opt && next_arg < args.size()) {
      const std::string& kv = args[next_arg++];
      const auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) {
        throw Error(fmt::format("{}-arg '{}': expected KEY=VALUE", flag, kv));
      }
      if (out.empty()) {
        throw Error(fmt::format("{}-arg '{}' comes before any {}: give the {} first", flag, kv,
                                flag, flag.substr(2)));
      }
      out.back().args.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
    }
  }
}

#ifdef V2P_HAVE_CACHE
// The cache settings: the config file's "cache" object, then the flags over it. nullopt when
// neither asks for a cache.
std::optional<cache::FlashCacheOptions> cache_options(const ServeOptions& o,
                                                      const vfilter::ServeConfig& c) {
  std::optional<cache::FlashCacheOptions> co;
  if (!c.cache.empty()) {
    co = cache::parse_cache_config(c.cache, std::filesystem::path(o.config).parent_path());
  }
  const bool flags = !o.cache_size.empty() || !o.cache_block.empty() || !o.cache_mode.empty() ||
                     !o.cache_quotas.empty() || !o.cache_priorities.empty();
  if (o.cache.empty() && !co) {
    if (flags) throw Error("the --cache-* options need --cache FILE");
    return std::nullopt;
  }
  if (!co) co.emplace();
  if (!o.cache.empty()) co->file = o.cache;
  if (!o.cache_size.empty()) co->size_bytes = cache::parse_size(o.cache_size);
  if (!o.cache_block.empty()) {
    const auto b = cache::parse_size(o.cache_block);
    if (b == 0 || b > (64ULL << 20) || b % 4096 != 0)
      throw Error("--cache-block must be a multiple of 4K up to 64M");
    co->block_bytes = static_cast<std::uint32_t>(b);
  }
  if (!o.cache_mode.empty()) co->write_mode = cache::parse_write_mode(o.cache_mode);
  for (const auto& q : o.cache_quotas) co->quotas.push_back(cache::parse_vm_size(q));
  for (const auto& p : o.cache_priorities) co->priorities.push_back(cache::parse_vm_priority(p));
  co->direct_io = !o.no_direct;
  return co;
}

void print_cache_stats(const cache::FlashCache& fc) {
  for (const auto& vm : fc.vms()) {
    const auto s = fc.vm_stats(vm);
    if (!s) continue;
    fmt::print(
        "v2p serve: cache vm {}: {} hits, {} misses ({:.1f}% hits), {} B from flash, {} B "
        "resident, {} fills, {} evictions, {} corrupt\n",
        vm.empty() ? "<unnamed>" : vm, s->hits, s->misses, 100.0 * s->hit_ratio(),
        s->bytes_from_flash, s->resident_bytes, s->fills, s->evictions, s->corrupt);
  }
}
#endif

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
    c.server.vdisks.push_back(v);
  }
  // Flags override the file.
  if (!o.socket.empty()) c.server.unix_socket = o.socket;
  if (!o.socket_mode.empty()) c.server.socket_mode = vfilter::parse_socket_mode(o.socket_mode);
  if (!o.tcp.empty()) vfilter::parse_tcp_address(o.tcp, c.server.tcp_host, c.server.tcp_port);
  if (!o.tls_creds.empty()) c.server.tls_creds = o.tls_creds;
  if (!o.vhost_user.empty()) c.server.vhost_user_socket = o.vhost_user;
  if (!o.record.empty()) c.record = o.record;
  if (o.no_tagging) c.server.tagging = false;
  if (o.no_direct) c.server.direct_io = false;
  // Command-line policies load after the file's.
  c.policies.insert(c.policies.end(), o.policies.begin(), o.policies.end());
  c.filters.insert(c.filters.end(), o.filters.begin(), o.filters.end());
  if (o.policy_tick_ms != 0) c.policy_tick_ms = o.policy_tick_ms;
  if (c.server.unix_socket.empty() && c.server.tcp_port == 0 &&
      c.server.vhost_user_socket.empty()) {
    throw Error("no listener: give --socket PATH, --tcp [HOST:]PORT and/or --vhost-user PATH");
  }
  return c;
}

int run_serve(const ServeOptions& o) {
  auto config = build_config(o);
  vfilter::StackRequest stack;
  stack.filters = config.filters;
#ifdef V2P_HAVE_CACHE
  stack.cache = cache_options(o, config);
#else
  if (!o.cache.empty() || !config.cache.empty())
    throw Error("this v2p was built without the flash cache (policy/cache)");
#endif
#ifdef V2P_HAVE_TIER
  stack.tier = tier_stage_options(o.tier, config.server.direct_io);
#endif
  stack.file_backend = o.file_backend;
  stack.log = [](std::string_view line) { fmt::print("v2p serve: {}\n", line); };
  const auto stacks = vfilter::build_stacks(config.server, stack);
#ifdef V2P_HAVE_CACHE
  const std::shared_ptr<cache::FlashCache>& flash = stacks.cache;
#endif
  StopSignal stop;
  std::unique_ptr<vfilter::RecordFileSink> sink;
  if (!config.record.empty()) sink = std::make_unique<vfilter::RecordFileSink>(config.record);
  vfilter::RecordSink* server_sink = sink.get();
  // The agent gets everything too; it never holds up the data path (vfilter/agent_sink.hpp).
  std::unique_ptr<vfilter::AgentSink> agent_sink;
  if (!o.agent.empty()) {
    vfilter::AgentSinkOptions ao;
    ao.socket = o.agent;
    ao.next = sink.get();
    ao.timings = !o.no_export_latency;
    agent_sink = std::make_unique<vfilter::AgentSink>(std::move(ao));
    // The agent runs elsewhere (another cwd): it gets absolute image paths.
    for (auto& v : config.server.vdisks) {
      if (v.image.empty()) continue;
      v.image = std::filesystem::absolute(v.image);
      agent_sink->announce_image(v.image.string());
    }
    server_sink = agent_sink.get();
  }
#if V2P_HAVE_POLICY_HOST
  // Policies are loaded (and refused) before the server listens; the host's thread starts with
  // the server and stops after it, so every completed request reaches them.
  policy::HostOptions host_options;
  host_options.tick_ns = config.policy_tick_ms * 1'000'000;
  host_options.log = [](std::string_view line) { fmt::print("v2p serve: {}\n", line); };
  policy::PolicyHost policies(std::move(host_options));
  for (const auto& p : config.policies) {
    const auto name = policies.load({p.file, p.args});
    fmt::print("v2p serve: policy {} loaded from {} ({} args)\n", name, p.file.string(),
               p.args.size());
  }
#ifdef V2P_HAVE_TIER
  // The tier policy runs on its stages from now on; policies see them through TierControl.
  const auto tier = start_tier_policy(o.tier, stacks.tiers);
  policies.set_tier(tier->control());
#endif
#ifdef V2P_HAVE_CACHE
  if (flash) {
    // Policies reach the cache through CacheControl and answer its admission questions.
    policies.set_cache(flash.get());
    if (!policies.empty()) {
      flash->set_admit_hook([&policies](const IoEvent& miss) { return policies.admit(miss); });
    }
  }
#endif
  std::unique_ptr<policy::RecordTee> tee;
  if (!policies.empty()) {
    tee = std::make_unique<policy::RecordTee>(policies, server_sink);
    server_sink = tee.get();
    policies.start();
  }
#else
  if (!config.policies.empty()) {
    throw Error("this v2p was built without the policy component: --policy is not available");
  }
#ifdef V2P_HAVE_TIER
  const auto tier = start_tier_policy(o.tier, stacks.tiers);
#endif
#endif
  auto server = vfilter::Server::start(config.server, server_sink);
  // The agent's probe slot table, once it watches our images: our tagged repeats are then
  // counted in the kernel instead of sent (docs/pfilter.md, "The slot table").
  if (agent_sink && config.server.tagging) {
    agent_sink->on_slot_table(
        [s = server.get()](int map_fd, std::uint32_t row) { s->attach_slot_table(map_fd, row); });
  }
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
  if (!config.server.vhost_user_socket.empty()) {
    fmt::print("v2p serve: vhost-user-blk on {}\n", config.server.vhost_user_socket.string());
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
  // The stacks go with the server: filters close (and may flush) before the cache records its
  // index.
  if (agent_sink) agent_sink->on_slot_table({});  // the server goes first
  server.reset();
  config.server.vdisks.clear();
#ifdef V2P_HAVE_CACHE
  if (flash) {
    print_cache_stats(*flash);
    flash->close();
  }
#endif
  if (sink) sink->flush(true);
#if V2P_HAVE_POLICY_HOST
  if (!policies.empty()) {
    policies.stop();
    const auto ps = policies.stats();
    fmt::print("v2p serve: policies: {} live, {} unloaded, {} I/O events ({} dropped), {} ticks\n",
               ps.loaded, ps.unloaded, ps.events, ps.dropped_events, ps.ticks);
  }
#endif
  if (agent_sink) {
    const auto as = agent_sink->stats();
    fmt::print("v2p serve: agent: {} records sent, {} lost, {} connections\n", as.sent, as.lost,
               as.connections);
  }
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
       app.add_option("--vhost-user", o->vhost_user,
                      "Serve the first vdisk as vhost-user-blk on this unix socket");
       app.add_option("--tls-creds", o->tls_creds,
                      "Require TLS on TCP: DIR with ca-cert.pem, server-cert.pem, server-key.pem");
       app.add_flag("--read-only", o->read_only, "Export read-only");
       app.add_flag("--no-tagging", o->no_tagging, "Do not put slot ids into the ioprio hint bits");
       app.add_flag("--no-direct", o->no_direct, "Buffered I/O, not O_DIRECT");
       app.add_option("--record", o->record, "Write the context records to this v2p stream file");
       app.add_option("--agent", o->agent,
                      "Stream declarations and records to the v2p agent's ingest socket "
                      "(e.g. /run/v2p/ingest.sock); the data path never waits for it");
       app.add_flag("--no-export-latency", o->no_export_latency,
                    "With --agent: do not time requests for the agent's export-layer latency");
       app.add_option("--policy", "Load a policy shared object (repeatable)")
           ->type_name("FILE.so")
           ->allow_extra_args(false)
           ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
       app.add_option("--policy-arg", "KEY=VALUE for the --policy before it (repeatable, in order)")
           ->type_name("KEY=VALUE")
           ->allow_extra_args(false)
           ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
       app.add_option("--policy-tick-ms", o->policy_tick_ms,
                      "Interval of the policies' on_tick (default 1000)")
           ->check(CLI::Range(1, 3'600'000));
       app.add_option("--filter", "Load a data-path filter shared object (repeatable)")
           ->type_name("FILE.so")
           ->allow_extra_args(false)
           ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
       app.add_option("--filter-arg", "KEY=VALUE for the --filter before it (repeatable, in order)")
           ->type_name("KEY=VALUE")
           ->allow_extra_args(false)
           ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
       app.add_flag("--file-backend", o->file_backend,
                    "Serve images through the backend stack (FileBackend on tagged workers) "
                    "instead of io_uring: the path --cache uses, for comparisons");
       app.add_option("--cache", o->cache,
                      "Flash cache file or device in front of every image (docs/cache.md)");
       app.add_option("--cache-size", o->cache_size,
                      "Cache size (e.g. 8G; default: the existing file's size)");
       app.add_option("--cache-block", o->cache_block, "Cache block size (default 64K)");
       app.add_option("--cache-mode", o->cache_mode, "write-through (default) or write-around");
       app.add_option("--cache-quota", o->cache_quotas,
                      "VM=BYTES: most flash the VM's entries may hold (repeatable)");
       app.add_option("--cache-priority", o->cache_priorities,
                      "VM=N: class of service; higher evicts lower (repeatable)");
#ifdef V2P_HAVE_TIER
       add_tier_flags(app, o->tier);
#endif
       return [o, &app] {
         collect_plugins(app, "--policy", o->policies);
         collect_plugins(app, "--filter", o->filters);
         return run_serve(*o);
       };
     }}};

}  // namespace
}  // namespace v2p::cli
