// `v2p demo`: the whole chain on an embedded default. It builds its own loop-backed file system
// and a sparse vdisk image, serves the image through the vfilter, attaches the pfilter probe to
// the loop device, drives a real NBD client, joins both streams into the V2P map live, verifies
// the map against FIEMAP and removes everything it made — on success, failure and Ctrl-C.
#include <unistd.h>

#include <fmt/core.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "cli/demo_agent.hpp"
#include "cli/demo_report.hpp"
#include "cli/demo_workload.hpp"
#include "cli/live_chain.hpp"
#include "cli/privileges.hpp"
#include "cli/subcommand.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "common/loop_filesystem.hpp"
#include "common/sparse_image.hpp"
#include "common/stop_signal.hpp"
#include "correlator/verify.hpp"

namespace v2p::cli {
namespace {

constexpr const char* kWorkdirPrefix = "/var/tmp/v2p-demo.";

struct DemoOptions {
  std::string fs_type = "ext4";
  std::string workload = "auto";
  std::string vm = "demo-vm";
  std::string vdisk = "disk0";
  unsigned image_mib = 256;
  unsigned workload_mib = 16;
  std::filesystem::path guest_dir = "/var/cache/v2p/guest";
  std::filesystem::path snapshot;  // live map for `v2p map/whose --snapshot`
  unsigned snapshot_ms = 1000;
  bool keep = false;  // keep serving (export, probe, map) after the report until Ctrl-C
};

// Removes the demo's working directory last, after every object living in it is gone.
class Workdir {
 public:
  Workdir() : path_(kWorkdirPrefix + std::to_string(::getpid())) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
    std::filesystem::permissions(path_, std::filesystem::perms::owner_all);
  }
  ~Workdir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

int run_demo(const DemoOptions& o) {
  require_root_and_btf("v2p demo");
  StopSignal stop;
  const std::uint64_t started = monotonic_ns();
  const auto elapsed = [&] { return static_cast<double>(monotonic_ns() - started) / 1e9; };

  if (const int reaped = reap_stale_loop_filesystems(kWorkdirPrefix); reaped > 0) {
    fmt::print("v2p demo: removed {} loop device(s) left by an earlier demo that was killed\n",
               reaped);
  }
  Workdir workdir;
  fmt::print("[1/6] host file system: {} on a loop device ({} MiB, backing file in {})\n",
             o.fs_type, o.image_mib * 2, workdir.path().string());
  LoopFilesystem fs({workdir.path() / "host-fs.img", workdir.path() / "mnt",
                     std::uint64_t{o.image_mib} * 2 << 20, o.fs_type, true});
  const auto image = fs.mountpoint() / (o.vm + "-" + o.vdisk + ".raw");
  create_sparse_image(image, std::uint64_t{o.image_mib} << 20, o.fs_type == "btrfs");
  fmt::print("      {} mounted at {}; vdisk image {} ({} MiB, sparse)\n", fs.loop_device(),
             fs.mountpoint().string(), image.string(), o.image_mib);

  const auto socket = workdir.path() / "vfilter.sock";
  fmt::print("[2/6] pfilter: eBPF probe on {} (block_bio_queue, block_bio_remap, completion)\n",
             fs.loop_device());
  fmt::print("[3/6] vfilter: NBD export '{}' of {}/{} on {}\n", o.vdisk, o.vm, o.vdisk,
             socket.string());
  LiveChainOptions chain_options{
      {fs.device()}, {vfilter::image_vdisk(o.vm, o.vdisk, image)}, socket};
  if (!o.snapshot.empty()) {
    chain_options.snapshot = std::filesystem::absolute(o.snapshot);
    chain_options.snapshot_interval_ms = o.snapshot_ms;
    fmt::print("      live map: snapshot every {} ms to {}\n", o.snapshot_ms,
               chain_options.snapshot.string());
  }
  // The views of `v2p agent` (docs/observe.md): the export streams to an agent of the demo's own.
  DemoAgent views(workdir.path());
  chain_options.agent_ingest = views.ingest_socket();
  fmt::print("      agent: top view below, web page on http://{}/\n", views.web_address());
  LiveChain chain(chain_options);
  if (!views.wait_for_probe(std::chrono::seconds(10))) {
    fmt::print("      agent: its probe is not attached yet; its views may miss the first I/O\n");
  }
  const auto& corr = chain.correlator();

  Workload workload(
      {parse_workload_kind(o.workload), socket, o.vdisk, o.guest_dir, o.workload_mib});
  fmt::print("[4/6] workload: {}\n", workload.description());
  double next_report = 1.0, next_top = 2.0;
  while (!workload.exited() && !stop.requested()) {
    chain.pump(100);
    for (const auto& line : workload.progress_lines()) fmt::print("      | {}\n", line);
    if (elapsed() >= next_report) {
      print_progress_line(elapsed(), corr);
      next_report = elapsed() + 1.0;
    }
    if (elapsed() >= next_top) {
      // What `v2p top` shows for the demo VM: IOPS, MB/s and latency per layer.
      for (const auto& line : views.top_lines()) fmt::print("      top | {}\n", line);
      next_top = elapsed() + 2.0;
    }
  }
  for (const auto& line : workload.progress_lines()) fmt::print("      | {}\n", line);
  if (stop.requested()) {
    workload.stop();
    fmt::print("v2p demo: interrupted (signal {}); cleaning up\n", stop.signal());
    return 130;
  }
  chain.settle();
  print_progress_line(elapsed(), corr);

  fmt::print("[5/6] V2P map\n");
  print_vdisk_maps(corr, 12);

  fmt::print("[6/6] verify against ground truth (FIEMAP of {})\n", image.string());
  const auto key = find_vdisk(corr, o.vm, o.vdisk);
  const auto report = correlator::verify_against_fiemap(corr.map(), key, image, fs.device());
  print_verify_report(report);

  const bool workload_ok = workload.succeeded();
  const bool map_ok = report.bytes_observed > 0 && report.bytes_wrong == 0;
  print_summary(corr, report, workload_ok, elapsed());
  if (!workload_ok) fmt::print("v2p demo: FAILED: the workload did not verify its own data\n");
  if (!map_ok) fmt::print("v2p demo: FAILED: the recovered map does not match FIEMAP\n");
  if (o.keep && workload_ok && map_ok) {
    // Stays a live chain: any NBD client may attach to the export, and the map keeps following.
    fmt::print("v2p demo: serving until Ctrl-C: export nbd+unix:///{}?socket={}\n", o.vdisk,
               socket.string());
    fmt::print("v2p demo: web view (heat map, latency per layer): http://{}/\n",
               views.web_address());
    fmt::print("v2p demo: top view: v2p top --agent {}\n", views.query_socket().string());
    if (!o.snapshot.empty()) {
      fmt::print(
          "v2p demo: query it with: v2p map --snapshot {0} | v2p whose {1} SECTOR "
          "--snapshot {0}\n",
          std::filesystem::absolute(o.snapshot).string(), fs.loop_device());
    }
    std::fflush(stdout);
    while (!stop.requested()) chain.pump(100);
    chain.settle();
    fmt::print("v2p demo: stopped (signal {}); {} snapshots written; cleaning up\n", stop.signal(),
               chain.snapshots_written());
  }
  return workload_ok && map_ok ? 0 : 1;
}

const Register kRegister{
    {"demo",
     "Run the whole chain on its own loop device, image and workload, then "
     "verify the map",
     [](CLI::App& app) {
       auto o = std::make_shared<DemoOptions>();
       app.add_option("--fs", o->fs_type, "Host file system: ext4, xfs or btrfs")
           ->capture_default_str();
       app.add_option("--workload", o->workload, "auto, guest (QEMU under TCG), fio or qemu-io")
           ->capture_default_str();
       app.add_option("--image-mib", o->image_mib, "vdisk size in MiB")
           ->capture_default_str()
           ->check(CLI::Range(64u, 4096u));
       app.add_option("--mib", o->workload_mib, "MiB the workload writes")
           ->capture_default_str()
           ->check(CLI::Range(1u, 1024u));
       app.add_option("--guest-dir", o->guest_dir,
                      "Test guest kernel and initramfs (scripts/setup.sh)")
           ->capture_default_str();
       app.add_option("--snapshot", o->snapshot,
                      "Write the live map to FILE periodically (atomic, mode 0600), for "
                      "v2p map/whose --snapshot FILE");
       app.add_option("--snapshot-ms", o->snapshot_ms, "Interval of --snapshot in ms")
           ->capture_default_str()
           ->check(CLI::Range(10u, 3600000u));
       app.add_flag("--keep", o->keep,
                    "After the report, keep the export, probe and map running until Ctrl-C");
       return [o] { return run_demo(*o); };
     }}};

}  // namespace
}  // namespace v2p::cli
