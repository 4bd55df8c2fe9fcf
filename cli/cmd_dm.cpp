// `v2p dm create|remove|status|limit|stats`: the dm-v2p target (kmod/, docs/dm-target.md)
// through libdevmapper, for hosts where the physical layer is a device-mapper target rather
// than the eBPF probe. Each needs root, device-mapper and the dm-v2p module.
#include <fmt/core.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/subcommand.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "common/record_file.hpp"
#include "common/stop_signal.hpp"
#include "pfilter/dm_ring_source.hpp"
#include "pfilter/dm_target.hpp"
#include "pfilter/events.hpp"
#include "pfilter/recorder.hpp"

namespace v2p::cli {
namespace {

struct DmOptions {
  std::string name;
  std::string device;
  std::uint64_t offset = 0;
  std::string who;  // a class: untagged, other or a process id
  std::uint64_t iops = 0;
  std::uint64_t bps = 0;
  std::string prio;  // CLASS:LEVEL, e.g. be:4; "none" restores the bios' own
  bool json = false;
  std::string record;  // watch: stream file
  bool print = false;
  double duration = 0;
};

// Reads the target's ring like `v2p probe` reads the eBPF probe: the same stream file, which
// `v2p replay` and the agent join.
int run_watch(const DmOptions& o) {
  StopSignal stop;
  pfilter::DmRingSource ring;
  const auto dropped_at_start = ring.stats().dropped;
  std::optional<StreamWriter> writer;
  std::optional<pfilter::EventRecorder> recorder;
  if (!o.record.empty()) {
    writer.emplace(o.record);
    recorder.emplace(*writer);
  }
  std::optional<pfilter::ReqFlagBits> bits;
  if (o.print) bits = pfilter::ReqFlagBits::from_kernel();
  auto on_event = [&](const PhysEvent& e) {
    if (bits) fmt::print("{}\n", pfilter::format_event(e, *bits));
    if (recorder) recorder->record(e);
  };
  fmt::print(stderr, "dm watch: reading {}; Ctrl-C to stop\n", pfilter::kDmRingPath);
  const std::uint64_t start = monotonic_ns();
  std::uint64_t total = 0;
  auto lost = [&] { return ring.stats().dropped - dropped_at_start; };
  while (!stop.requested()) {
    if (o.duration > 0 && monotonic_ns() - start >= static_cast<std::uint64_t>(o.duration * 1e9))
      break;
    total += ring.poll(100, on_event);
    if (recorder) recorder->record_lost(monotonic_ns(), lost());
  }
  total += ring.poll(0, on_event);
  if (recorder) {
    recorder->record_lost(monotonic_ns(), lost());
    writer->flush(true);
  }
  fmt::print(stderr, "dm watch: {} records, {} dropped by the ring{}\n", total, lost(),
             o.record.empty() ? "" : ", recorded in " + o.record);
  return 0;
}

int run_status(const DmOptions& o) {
  const auto st = pfilter::parse_dm_v2p_status(pfilter::dm_v2p_status_text(o.name));
  if (o.json) {
    nlohmann::json classes = nlohmann::json::array();
    for (const auto& c : st.classes) {
      classes.push_back({{"class", c.name},
                         {"ios", c.ios},
                         {"bytes", c.bytes},
                         {"iops_limit", c.iops_limit},
                         {"bytes_per_second_limit", c.bps_limit},
                         {"prio", c.prio},
                         {"delayed", c.delayed}});
    }
    const nlohmann::json out{{"device", o.name},
                             {"records", st.records},
                             {"ring_dropped", st.dropped},
                             {"classes", classes}};
    fmt::print("{}\n", out.dump(2));
    return 0;
  }
  fmt::print("{}: {} records sent, {} dropped by the ring (module-wide)\n", o.name, st.records,
             st.dropped);
  fmt::print("{:<10} {:>12} {:>16} {:>10} {:>14} {:>8} {:>10}\n", "class", "ios", "bytes",
             "iops-lim", "bytes/s-lim", "prio", "delayed");
  for (const auto& c : st.classes) {
    fmt::print("{:<10} {:>12} {:>16} {:>10} {:>14} {:>8} {:>10}\n", c.name, c.ios, c.bytes,
               c.iops_limit, c.bps_limit, c.prio, c.delayed);
  }
  return 0;
}

int run_limit(const DmOptions& o) {
  if (o.prio.empty() || o.iops || o.bps) {
    pfilter::dm_v2p_message(o.name, fmt::format("limit {} {} {}", o.who, o.iops, o.bps));
  }
  if (!o.prio.empty()) {
    const auto colon = o.prio.find(':');
    const std::string cls = o.prio.substr(0, colon);
    const std::string level = colon == std::string::npos ? "0" : o.prio.substr(colon + 1);
    pfilter::dm_v2p_message(o.name, fmt::format("prio {} {} {}", o.who, cls, level));
  }
  return 0;
}

int guarded(const std::function<int()>& f) {
  try {
    return f();
  } catch (const Error& e) {
    fmt::print(stderr, "v2p dm: {}\n", e.what());
    return 1;
  }
}

const Register kRegister{
    {"dm", "The dm-v2p device-mapper target: create, remove, status, limit, stats",
     [](CLI::App& app) {
       auto o = std::make_shared<DmOptions>();
       auto selected = std::make_shared<std::function<int()>>();
       app.require_subcommand(1);
       auto sub = [&](const char* name, const char* help, std::function<int()> run) {
         CLI::App* s = app.add_subcommand(name, help);
         s->add_option("NAME", o->name, "Device name (/dev/mapper/NAME)")->required();
         s->callback([selected, run] { *selected = [run] { return guarded(run); }; });
         return s;
       };
       auto* create = sub("create", "Create NAME: a v2p target over the whole of DEVICE", [o] {
         pfilter::dm_v2p_create(o->name, o->device, o->offset);
         fmt::print("/dev/mapper/{}: v2p over {} from sector {}\n", o->name, o->device, o->offset);
         return 0;
       });
       create->add_option("DEVICE", o->device, "The device below, e.g. /dev/vdb")->required();
       create->add_option("--offset", o->offset, "First sector of DEVICE to use");
       sub("remove", "Remove NAME", [o] {
         pfilter::dm_v2p_remove(o->name);
         return 0;
       });
       auto* status = sub("status", "Records, ring drops and per-class counters and limits",
                          [o] { return run_status(*o); });
       status->add_flag("--json", o->json, "Machine-readable output");
       auto* limit = sub("limit", "Set a class's IOPS and bandwidth limits (0: none), priority",
                         [o] { return run_limit(*o); });
       limit->add_option("CLASS", o->who, "untagged, other, or the process id of a VM's export")
           ->required();
       limit->add_option("--iops", o->iops, "I/Os per second (0: unlimited)");
       limit->add_option("--bps", o->bps, "Bytes per second (0: unlimited)");
       limit->add_option("--prio", o->prio, "ioprio for the class's bios: none|rt|be|idle[:0-7]");
       sub("stats", "Per-class counters with latency histograms (log2 microseconds)", [o] {
         fmt::print("{}\n", pfilter::dm_v2p_message(o->name, "stats"));
         return 0;
       });
       // `watch` reads the module's one ring: it takes no device name.
       auto* watch = app.add_subcommand("watch", "Print or record the target's ring (all devices)");
       watch->add_option("--record", o->record, "Write a v2p stream file (v2p replay reads it)");
       watch->add_flag("--print", o->print, "Print each record");
       watch->add_option("--duration", o->duration, "Stop after this many seconds");
       watch->callback(
           [selected, o] { *selected = [o] { return guarded([o] { return run_watch(*o); }); }; });
       sub("reset", "Zero NAME's counters", [o] {
         pfilter::dm_v2p_message(o->name, "reset");
         return 0;
       });
       return [selected] { return *selected ? (*selected)() : 1; };
     }}};

}  // namespace
}  // namespace v2p::cli
