// `v2p cluster …`: many hosts on etcd (docs/cluster.md). init makes the cluster CA and host
// credentials; status shows every host (up/down, address, stores, free space, load, VMs) from
// etcd; put/get/pool/rebuild/rebalance run the erasure-coded pool across the hosts' agents.
#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/subcommand.hpp"
#include "cluster/cluster_config.hpp"
#include "cluster/cluster_pool.hpp"
#include "cluster/credentials.hpp"
#include "cluster/membership.hpp"
#include "common/error.hpp"
#include "ec/status.hpp"

namespace v2p::cli {
namespace {

namespace fs = std::filesystem;
constexpr std::uint64_t kPiece = 8u << 20;

struct ClusterFlags {
  std::string config, etcd, cluster = "v2p", dir, file;
  std::vector<std::string> hosts;
  std::uint32_t vm = 0, vdisk = 1;
  std::uint64_t offset = 0, length = 0;
  bool json = false;
  double wait_down_s = 0;
};

cluster::ClusterConfig config_of(const ClusterFlags& f) {
  if (!f.config.empty()) return cluster::load_cluster_config(f.config);
  if (f.etcd.empty()) throw Error("give --config FILE or --etcd HOST:PORT,...");
  cluster::ClusterConfig c;
  c.etcd = cluster::parse_endpoints(f.etcd);
  c.cluster = f.cluster;
  return c;
}

std::string human(std::uint64_t b) {
  if (b >= (1ull << 30)) return fmt::format("{:.1f}G", static_cast<double>(b) / (1ull << 30));
  return fmt::format("{:.1f}M", static_cast<double>(b) / (1ull << 20));
}

int run_init(const ClusterFlags& f) {
  if (f.dir.empty() || f.hosts.empty()) throw Error("init needs --dir DIR and --host NAME ...");
  cluster::init_credentials(f.dir, f.hosts);
  fmt::print(
      "cluster CA in {}/ca.pem (keep {}/ca.key off the hosts); credentials for {} in "
      "{}/<host>/\n",
      f.dir, f.dir, fmt::format("{}", fmt::join(f.hosts, ", ")), f.dir);
  return 0;
}

int run_status(const ClusterFlags& f) {
  const auto c = config_of(f);
  cluster::EtcdClient client(c.etcd);
  const auto state = cluster::read_cluster(client, c.cluster);
  if (f.json) {
    nlohmann::json hosts = nlohmann::json::array();
    for (const auto& [name, h] : state.hosts) {
      auto j = nlohmann::json::parse(cluster::to_json(h.info));
      j["up"] = h.up;
      hosts.push_back(j);
    }
    fmt::print(
        "{}\n",
        nlohmann::json{{"cluster", c.cluster}, {"revision", state.revision}, {"hosts", hosts}}
            .dump());
    return 0;
  }
  std::size_t up = 0;
  for (const auto& [n, h] : state.hosts) up += h.up ? 1 : 0;
  fmt::print("cluster {}: {} hosts, {} up, {} down (etcd revision {})\n", c.cluster,
             state.hosts.size(), up, state.hosts.size() - up, state.revision);
  fmt::print("{:<12} {:<5} {:<22} {:>6} {:>7} {:>10} {:>10}  {}\n", "HOST", "STATE", "ADDRESS",
             "LOAD", "STORES", "FREE", "TOTAL", "VMS");
  for (const auto& [name, h] : state.hosts) {
    std::uint64_t free = 0, total = 0;
    for (const auto& s : h.info.stores) free += s.free_bytes, total += s.total_bytes;
    fmt::print("{:<12} {:<5} {:<22} {:>6.2f} {:>7} {:>10} {:>10}  {}\n", name, h.up ? "up" : "DOWN",
               h.info.address, h.info.load, h.info.stores.size(), h.up ? human(free) : "-",
               h.up ? human(total) : "-", fmt::format("{}", fmt::join(h.info.vms, ",")));
  }
  return 0;
}

// `v2p whose --cluster`-style question at the cluster level: which host serves VM.
int run_whose(const ClusterFlags& f) {
  const auto c = config_of(f);
  cluster::EtcdClient client(c.etcd);
  const auto state = cluster::read_cluster(client, c.cluster);
  int found = 0;
  for (const auto& [name, h] : state.hosts) {
    if (!h.up) continue;
    if (std::find(h.info.vms.begin(), h.info.vms.end(), f.file) != h.info.vms.end()) {
      fmt::print("{} {} {}\n", f.file, name, h.info.address);
      ++found;
    }
  }
  if (found == 0) {
    fmt::print(stderr, "v2p: no host that is up serves VM {}\n", f.file);
    return 1;
  }
  return 0;
}

int run_put(const ClusterFlags& f) {
  cluster::ClusterPool cp(config_of(f));
  auto& pool = cp.pool();
  const int fd = ::open(f.file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw system_error("cannot open " + f.file);
  const auto size = fs::file_size(f.file);
  const std::uint64_t end = f.length ? f.offset + f.length : size;
  if (end > size || f.offset > end) {
    ::close(fd);
    throw Error("range is beyond the end of " + f.file);
  }
  const VdiskKey key{VmId{f.vm}, VdiskId{f.vdisk}};
  std::vector<std::uint8_t> buf(kPiece);
  for (std::uint64_t off = f.offset; off < end;) {
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(kPiece, end - off));
    const ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(off));
    if (n <= 0) {
      ::close(fd);
      throw system_error("cannot read " + f.file);
    }
    pool.write(key, VirtualOffset{off}, std::span(buf).first(static_cast<std::size_t>(n)));
    off += static_cast<std::uint64_t>(n);
  }
  ::close(fd);
  pool.flush();
  fmt::print("vm {} vdisk {}: {} bytes protected as {} across the cluster's hosts (durable)\n",
             f.vm, f.vdisk, end - f.offset, pool.config().layout_for(key).label());
  return 0;
}

int run_get(const ClusterFlags& f) {
  cluster::ClusterPool cp(config_of(f));
  auto& pool = cp.pool();
  const int fd = ::open(f.file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw system_error("cannot create " + f.file);
  const VdiskKey key{VmId{f.vm}, VdiskId{f.vdisk}};
  for (std::uint64_t done = 0; done < f.length;) {
    const auto want = std::min<std::uint64_t>(kPiece, f.length - done);
    auto got = pool.read(key, VirtualOffset{f.offset + done}, want);
    if (!got.ok()) {
      ::close(fd);
      fs::remove(f.file);
      throw Error(got.error());
    }
    if (::pwrite(fd, got.value().data(), got.value().size(), static_cast<off_t>(done)) !=
        static_cast<ssize_t>(got.value().size())) {
      ::close(fd);
      throw system_error("cannot write " + f.file);
    }
    done += want;
  }
  ::close(fd);
  const auto s = pool.status();
  fmt::print("vm {} vdisk {}: {} bytes written to {} ({} healthy, {} degraded container reads)\n",
             f.vm, f.vdisk, f.length, f.file, s.reads.healthy, s.reads.degraded);
  return 0;
}

int run_pool(const ClusterFlags& f) {
  cluster::ClusterPool cp(config_of(f));
  const auto s = cp.pool().status();
  fmt::print("{}", f.json ? ec::status_json(s) + "\n" : ec::status_text(s));
  return 0;
}

void print_report(const char* what, const ec::RebuildReport& rep) {
  fmt::print("{}: {} chunks moved or rebuilt of {}, {} failed\n", what, rep.chunks_rebuilt,
             rep.chunks_total, rep.failed);
  for (const auto& p : rep.problems) fmt::print("  {}\n", p);
}

int run_rebuild(const ClusterFlags& f) {
  cluster::ClusterPool cp(config_of(f));
  if (f.wait_down_s > 0) {
    // For scripts: wait until etcd has expired some host's lease (a loss to rebuild after).
    const auto end = std::chrono::steady_clock::now() +
                     std::chrono::milliseconds(static_cast<long>(f.wait_down_s * 1000));
    while (cp.stores_of_down_hosts().empty() && std::chrono::steady_clock::now() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  const auto down = cp.stores_of_down_hosts();
  if (down.empty()) {
    fmt::print("rebuild: every member host is up; nothing to do\n");
    return 0;
  }
  fmt::print("rebuild: stores {} are on hosts that are down\n",
             fmt::format("{}", fmt::join(down, ",")));
  const auto t0 = std::chrono::steady_clock::now();
  std::uint64_t last = 0;
  auto rep = cp.rebuild_down_hosts([&](std::uint64_t done, std::uint64_t total) {
    if (done == total || done - last >= 16) {
      fmt::print("rebuild: {}/{} chunks\n", done, total);
      last = done;
    }
  });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  print_report("rebuild", rep);
  fmt::print("rebuild: {:.2f} s\n", secs);
  return rep.failed == 0 ? 0 : 1;
}

int run_drain(const ClusterFlags& f) {
  cluster::ClusterPool cp(config_of(f));
  auto rep = cp.drain(f.file, [](std::uint64_t done, std::uint64_t total) {
    if (done == total || done % 16 == 0) fmt::print("drain: {}/{} chunks\n", done, total);
  });
  print_report("drain", rep);
  if (rep.failed == 0) fmt::print("drain: {} left the cluster (stop its agent now)\n", f.file);
  return rep.failed == 0 ? 0 : 1;
}

int run_rebalance(const ClusterFlags& f) {
  cluster::ClusterPool cp(config_of(f));
  auto rep = cp.rebalance([](std::uint64_t done, std::uint64_t total) {
    fmt::print("rebalance: {}/{} chunks\n", done, total);
  });
  print_report("rebalance", rep);
  return rep.failed == 0 ? 0 : 1;
}

const Register kCluster{
    {"cluster",
     "Many hosts on etcd: init, status, whose, put, get, pool, rebuild, drain, rebalance",
     [](CLI::App& app) -> std::function<int()> {
       app.require_subcommand(1);
       auto f = std::make_shared<ClusterFlags>();
       auto selected = std::make_shared<std::function<int()>>();
       auto sub = [&](const char* name, const char* what, std::function<int()> run) {
         auto* s = app.add_subcommand(name, what);
         s->callback([selected, run] { *selected = run; });
         return s;
       };
       auto with_config = [f](CLI::App* s) {
         s->add_option("--config", f->config, "The host's cluster configuration (JSON)");
         s->add_option("--etcd", f->etcd, "etcd endpoints HOST:PORT,... (instead of --config)");
         s->add_option("--cluster", f->cluster, "Cluster name (with --etcd)");
       };
       auto* init = sub("init", "Make the cluster CA and a credentials folder per host",
                        [f] { return run_init(*f); });
       init->add_option("--dir", f->dir, "Folder for the CA and the hosts' credentials");
       init->add_option("--host", f->hosts, "Host name (repeat)");
       auto* status = sub("status", "Every host: up/down, address, stores, free space, load, VMs",
                          [f] { return run_status(*f); });
       with_config(status);
       status->add_flag("--json", f->json, "Machine-readable output");
       auto* whose = sub("whose", "Which host serves a VM", [f] { return run_whose(*f); });
       with_config(whose);
       whose->add_option("VM", f->file, "VM name")->required();
       auto* put = sub("put", "Put a byte range of an image into the pool across hosts",
                       [f] { return run_put(*f); });
       with_config(put);
       put->add_option("--vm", f->vm, "VM id")->required();
       put->add_option("--vdisk", f->vdisk, "vdisk id");
       put->add_option("--image", f->file, "Image file")->required();
       put->add_option("--offset", f->offset, "First byte");
       put->add_option("--length", f->length, "Bytes (default: to the end)");
       auto* get = sub("get", "Read a byte range back from the hosts", [f] { return run_get(*f); });
       with_config(get);
       get->add_option("--vm", f->vm, "VM id")->required();
       get->add_option("--vdisk", f->vdisk, "vdisk id");
       get->add_option("--offset", f->offset, "First byte");
       get->add_option("--length", f->length, "Bytes")->required();
       get->add_option("--out", f->file, "File to write")->required();
       auto* pool = sub("pool", "The pool's status: containers, stores, chunks present",
                        [f] { return run_pool(*f); });
       with_config(pool);
       pool->add_flag("--json", f->json, "Machine-readable output");
       auto* rebuild = sub("rebuild", "Re-create the chunks of down hosts on the hosts that are up",
                           [f] { return run_rebuild(*f); });
       with_config(rebuild);
       rebuild->add_option("--wait-down", f->wait_down_s,
                           "Wait up to this many seconds for a host to be seen down");
       auto* drain = sub("drain", "Move every chunk off a host, then remove it from the cluster",
                         [f] { return run_drain(*f); });
       with_config(drain);
       drain->add_option("HOST", f->file, "The host that leaves")->required();
       auto* rebalance = sub("rebalance", "Move chunks onto hosts that joined",
                             [f] { return run_rebalance(*f); });
       with_config(rebalance);
       return [selected] { return (*selected)(); };
     }}};

}  // namespace
}  // namespace v2p::cli
