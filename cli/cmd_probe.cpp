// `v2p probe`: the pfilter on its own — attach to the block tracepoints, print or record what the
// chosen devices and processes do. `v2p replay` (and `probe --replay`) prints a recorded stream
// without privileges; `probe --import-blkparse` turns a blktrace capture into the same stream.
#include <fmt/core.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cli/privileges.hpp"
#include "cli/subcommand.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "common/record_file.hpp"
#include "common/stop_signal.hpp"
#include "pfilter/blkparse.hpp"
#include "pfilter/events.hpp"
#include "pfilter/probe.hpp"
#include "pfilter/recorder.hpp"
#include "pfilter/replay.hpp"
#include "pfilter/topology.hpp"

namespace v2p::cli {
namespace {

struct ProbeArgs {
  std::vector<std::string> devices;
  std::vector<std::uint32_t> pids;
  std::string record;
  std::string replay;
  std::string import_blkparse;
  double duration = 0;
  double stats_interval = 1.0;
  bool print = false;
  bool no_completions = false;
  bool every_bio = false;
  bool no_pin = false;
  std::string pin_dir = "/sys/fs/bpf/v2p";
  std::uint32_t ring_mib = 16;
  std::uint32_t batch_kib = 64;
  std::uint32_t flush_ms = 10;
  std::uint32_t seen_ranges = pfilter::ProbeOptions{}.seen_ranges;
};

int replay(const std::string& path) {
  const auto bits = pfilter::ReqFlagBits{};
  pfilter::ReplayHandlers h;
  h.on_event = [&bits](const PhysEvent& e) { fmt::print("{}\n", pfilter::format_event(e, bits)); };
  h.on_device = [](const pfilter::BlockDevice& d) {
    fmt::print("# device {},{} {} ({})", d.id.major(), d.id.minor(), d.name, to_string(d.kind));
    if (d.parent != DeviceId{}) fmt::print(" on {},{}", d.parent.major(), d.parent.minor());
    if (d.kind == pfilter::DeviceKind::kPartition) fmt::print(" start {}", d.start_sector);
    if (!d.backing_file.empty())
      fmt::print(" backing {} offset {}", d.backing_file, d.backing_offset);
    fmt::print("\n");
  };
  h.on_lost = [](const LostEvents& l) {
    fmt::print("# lost events: {} in total so far (at {} ns)\n", l.lost_total, l.ts_ns);
  };
  const auto c = pfilter::replay_stream(path, h);
  fmt::print("# {} events, {} devices, {} lost, {} other frames\n", c.events, c.devices,
             c.lost_total, c.other);
  return 0;
}

int import_blkparse(const ProbeArgs& a) {
  std::ifstream in(a.import_blkparse);
  if (!in) throw Error("cannot open blkparse output " + a.import_blkparse);
  const auto imported = pfilter::import_blkparse(in);
  if (a.record.empty()) {
    for (const auto& e : imported.events) fmt::print("{}\n", pfilter::format_event(e, {}));
  } else {
    StreamWriter out(a.record);
    for (const auto& e : imported.events) out.write(e);
    out.flush(true);
  }
  fmt::print(stderr, "imported {} events from {} lines ({} not Q/A/C events){}\n",
             imported.events.size(), imported.lines, imported.ignored,
             a.record.empty() ? "" : " into " + a.record);
  return 0;
}

// "/dev/loop3" names a device; a mount point or any file names the device it lives on; "7:3"
// names one by number (useful where no udev made a node).
DeviceId resolve_device(const std::string& what) {
  unsigned major = 0;
  unsigned minor = 0;
  char extra = 0;
  if (std::sscanf(what.c_str(), "%u:%u%c", &major, &minor, &extra) == 2) {
    return DeviceId::from_major_minor(major, minor);
  }
  return pfilter::device_of_path(what);
}

int run_probe(const ProbeArgs& a) {
  require_root_and_btf("v2p probe");
  pfilter::ProbeOptions o;
  for (const auto& d : a.devices) o.devices.push_back(resolve_device(d));
  o.tgids = a.pids;
  // The full stream (an event per bio, with completions) only on request: by default the kernel
  // counts what the map already knows and keeps latency in its histograms (docs/pfilter.md).
  o.every_bio = a.every_bio;
  o.completions = a.every_bio && !a.no_completions;
  o.pin = !a.no_pin;
  o.pin_dir = a.pin_dir;
  o.ring_bytes = a.ring_mib << 20;
  o.wakeup_bytes = a.batch_kib << 10;
  o.flush_ms = a.flush_ms;
  o.seen_ranges = a.seen_ranges;

  StopSignal stop;
  auto probe = pfilter::Probe::attach(o);
  std::optional<StreamWriter> writer;
  std::optional<pfilter::EventRecorder> recorder;
  if (!a.record.empty()) {
    writer.emplace(a.record);
    recorder.emplace(*writer);
    for (const auto d : o.devices) recorder->declare(d);
  }
  const auto bits = pfilter::ReqFlagBits::from_kernel();
  fmt::print(stderr, "probe: attached ({} devices, {} processes{}){}; Ctrl-C to stop\n",
             o.devices.empty() ? "all" : std::to_string(o.devices.size()),
             o.tgids.empty() ? "all" : std::to_string(o.tgids.size()),
             o.every_bio ? (o.completions ? ", every bio, with completions" : ", every bio")
                         : ", repeats counted in the kernel",
             o.pin ? ", pinned in " + o.pin_dir.string() : "");

  const std::uint64_t start = monotonic_ns();
  const auto interval = static_cast<std::uint64_t>(a.stats_interval * 1e9);
  std::uint64_t next_stats = start + interval;
  std::uint64_t total = 0;
  std::uint64_t since_stats = 0;
  auto on_event = [&](const PhysEvent& e) {
    if (a.print) fmt::print("{}\n", pfilter::format_event(e, bits));
    if (recorder) recorder->record(e);
  };
  while (!stop.requested()) {
    const std::uint64_t now = monotonic_ns();
    if (a.duration > 0 && now - start >= static_cast<std::uint64_t>(a.duration * 1e9)) break;
    const auto n = probe->poll(100, on_event);
    total += n;
    since_stats += n;
    if (recorder) recorder->record_lost(monotonic_ns(), probe->lost_events());
    if (interval > 0 && monotonic_ns() >= next_stats) {
      fmt::print(stderr, "probe: {:.0f} events/s, {} events, {} lost\n",
                 static_cast<double>(since_stats) / a.stats_interval, total, probe->lost_events());
      since_stats = 0;
      next_stats += interval;
    }
  }
  total += probe->poll(0, on_event);  // what arrived while stopping
  const auto lost = probe->lost_events();
  if (recorder) {
    recorder->record_lost(monotonic_ns(), lost);
    writer->flush(true);
  }
  std::string completions;
  if (o.completions) {
    completions = fmt::format(", {} completions unreported, {} without a queue event",
                              probe->unreported_completions(), probe->unmatched_completions());
  }
  if (probe->suppressing()) {
    completions =
        fmt::format(", {} bios counted in the kernel (already known; {} of them untagged)",
                    probe->suppressed_bios(), probe->untagged_bios());
  }
  if (const auto uncounted = probe->uncounted_ios(); uncounted != 0) {
    completions += fmt::format(", {} I/Os not counted (the counter tables are full)", uncounted);
  }
  fmt::print(stderr, "probe: {} events, {} lost{}{}\n", total, lost, completions,
             a.record.empty() ? "" : ", recorded in " + a.record);
  return 0;
}

void add_replay_option(CLI::App& app, std::string& target) {
  app.add_option("--replay", target, "print a recorded stream file instead of probing (no root)")
      ->check(CLI::ExistingFile);
}

const Register kProbe(
    {"probe", "trace block I/O with the pfilter eBPF probe (print or record)",
     [](CLI::App& app) -> std::function<int()> {
       auto a = std::make_shared<ProbeArgs>();
       app.add_option("--device", a->devices,
                      "block device, MAJ:MIN, mount point or file (repeatable; "
                      "default: all devices)");
       app.add_option("--pid", a->pids, "process id (repeatable; default: all)");
       app.add_option("--record", a->record, "write a v2p stream file");
       app.add_option("--duration", a->duration, "seconds (default: until Ctrl-C)");
       app.add_flag("--print", a->print, "one line per event on stdout");
       app.add_option("--stats-interval", a->stats_interval,
                      "seconds between stats lines on stderr (0: none)");
       app.add_flag("--every-bio", a->every_bio,
                    "send an event for every bio and its completion (debugging; default: only "
                    "what the map does not know, the rest counted in the kernel)");
       app.add_option("--seen-ranges", a->seen_ranges,
                      "ranges the kernel remembers as reported (8 bytes each); a larger "
                      "working set is reported again as it is evicted");
       app.add_flag("--no-completions", a->no_completions,
                    "with --every-bio: no completion events (no per-bio latency)");
       app.add_flag("--no-pin", a->no_pin, "do not pin programs and maps");
       app.add_option("--pin-dir", a->pin_dir, "bpffs directory for the pins");
       app.add_option("--ring-mib", a->ring_mib, "ring buffer size in MiB (power of two)");
       app.add_option("--batch-kib", a->batch_kib,
                      "wake up only when this much event data waits "
                      "(0: at once; default 64, events wait <= 100 ms)");
       app.add_option("--flush-ms", a->flush_ms,
                      "send the events of unfilled per-CPU batches this often (default 10)")
           ->check(CLI::Range(1, 10000));
       add_replay_option(app, a->replay);
       app.add_option("--import-blkparse", a->import_blkparse,
                      "convert blkparse text output (to --record, or print it)")
           ->check(CLI::ExistingFile);
       return [a] {
         if (!a->replay.empty()) return replay(a->replay);
         if (!a->import_blkparse.empty()) return import_blkparse(*a);
         return run_probe(*a);
       };
     }});

const Register kReplay(
    {"replay", "print a recorded v2p stream file (no privileges needed)",
     [](CLI::App& app) -> std::function<int()> {
       auto path = std::make_shared<std::string>();
       app.add_option("file", *path, "stream file")->required()->check(CLI::ExistingFile);
       return [path] { return replay(*path); };
     }});

}  // namespace
}  // namespace v2p::cli
