// `v2p attach --pid PID`: passive attach to a running, unmodified QEMU or qemu-storage-daemon
// (docs/attach.md). Uprobes on its block layer give each guest request's offset at every layer;
// its file syscalls' bios are joined exactly. Runs until --duration, Ctrl-C, or every traced
// process has exited; detaches everything before it returns.
#include <fmt/core.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "cli/attach_session.hpp"
#include "cli/privileges.hpp"
#include "cli/subcommand.hpp"
#include "common/clock.hpp"
#include "common/stop_signal.hpp"
#include "correlator/map_source.hpp"

namespace v2p::cli {
namespace {

struct AttachArgs {
  std::vector<pid_t> pids;
  std::string vm;
  std::string record;
  double duration = 0;
};

void print_notes(AttachSession& s) {
  for (const auto& n : s.take_notes()) fmt::print("{}\n", n);
  std::fflush(stdout);
}

int run_attach(const AttachArgs& a) {
  require_root_and_btf("v2p attach");
  const StopSignal stop;
  AttachOptions o;
  o.pids = a.pids;
  o.vm_name = a.vm;
  o.record = a.record;
  AttachSession s(o);
  print_notes(s);
  const std::uint64_t end =
      a.duration > 0 ? monotonic_ns() + static_cast<std::uint64_t>(a.duration * 1e9) : 0;
  while (!stop.requested() && !s.all_exited() && (end == 0 || monotonic_ns() < end)) {
    s.pump(100);
    print_notes(s);
  }
  s.detach();
  s.settle();
  print_notes(s);

  const auto& c = s.correlator();
  const auto st = c.stats();
  const auto& j = s.join_stats();
  fmt::print("requests: {} at top nodes, {} below, {} metadata; syscalls: {} data, {} other\n",
             j.top_requests, j.lower_requests, j.metadata_requests, j.data_syscalls,
             j.other_syscalls);
  fmt::print("bios: {} joined exact, {} unattributed ({} bytes), lost events {}\n", st.joined_exact,
             j.unattributed_bios, j.unattributed_bytes, s.lost_events());
  for (const auto& d : c.vdisk_declarations()) {
    const VdiskKey key{VmId{d.vm_id}, VdiskId{d.vdisk_id}};
    const auto extents = c.map().extents(key).size();
    const auto mapped = c.map().mapped_bytes(key);
    const auto meta = j.metadata_bytes.find(key);
    fmt::print("{}: {} extents, {} bytes mapped; metadata of this vdisk {} bytes ({})\n",
               correlator::vdisk_label(c, key), extents, mapped,
               meta == j.metadata_bytes.end() ? 0 : meta->second, d.image_path);
  }
  return 0;
}

const Register kRegister{
    {"attach", "Map an unmodified QEMU's vdisks by uprobes on its block layer", [](CLI::App& app) {
       auto a = std::make_shared<AttachArgs>();
       app.add_option("--pid", a->pids, "QEMU or qemu-storage-daemon process id (repeatable)")
           ->required();
       app.add_option("--vm", a->vm, "VM name (default: QEMU's -name, else qemu-PID)");
       app.add_option("--record", a->record,
                      "Write the joined stream there (v2p map/whose/verify --stream read it)");
       app.add_option("--duration", a->duration,
                      "Seconds to stay attached (default: until Ctrl-C or the process exits)");
       return [a] { return run_attach(*a); };
     }}};

}  // namespace
}  // namespace v2p::cli
