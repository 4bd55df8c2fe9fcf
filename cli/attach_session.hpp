// Passive attach in one process: the qemu_uprobe programs on each traced QEMU, the pfilter probe
// on its bios, the uprobe join and the correlator (docs/attach.md). `v2p attach` and the root
// tests drive it; the caller decides when to pump.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/record_file.hpp"
#include "correlator/correlator.hpp"
#include "correlator/qemu_nodes.hpp"
#include "correlator/uprobe_join.hpp"
#include "pfilter/probe.hpp"
#include "pfilter/qemu_attach.hpp"

namespace v2p::cli {

struct AttachOptions {
  std::vector<pid_t> pids;
  std::string vm_name;             // empty: the process's -name, else "qemu-PID"
  std::filesystem::path record{};  // when set: the joined stream (records, events) goes there
  // A chain that owns the probe and the correlator (LiveChain): the session then loads no probe
  // and feeds this correlator; the chain hands it the probe's events (on_probe_event) and calls
  // poll_uprobes / advance / drain. Vdisks the chain declared (same image path) are reused, so
  // the exact join lands on the export's vdisk and replaces its window join.
  correlator::Correlator* into = nullptr;
  // With `into`: names a new vdisk (ids 0 in the declaration) and returns its key, so ids come
  // from the host (the agent's registry) instead of the session's own counter.
  std::function<VdiskKey(const VdiskDeclaration&)> register_vdisk{};
};

class AttachSession {
 public:
  // Attaches to every pid (throws v2p::Error with the one-line reason of the first failure,
  // having detached the others).
  explicit AttachSession(const AttachOptions& options);
  ~AttachSession();

  // Waits up to wait_ms for events, joins them, and detaches processes that exited.
  void pump(int wait_ms);
  // Lets the last events arrive, then closes every window.
  void settle();
  // Detaches every process now.
  void detach();

  // For a chain that owns the probe (AttachOptions::into).
  void on_probe_event(const PhysEvent& e) { join_->on_event(e); }
  void poll_uprobes();
  void advance(std::uint64_t now_ns) { join_->advance(now_ns); }
  void drain() { join_->drain(); }

  [[nodiscard]] bool all_exited() const;
  [[nodiscard]] const correlator::Correlator& correlator() const noexcept { return *corr_; }
  [[nodiscard]] const correlator::UprobeJoinStats& join_stats() const noexcept {
    return join_->stats();
  }
  [[nodiscard]] std::uint64_t lost_events() const;
  // "pid: message" lines of what happened (attach, exit, detach), for the operator.
  std::vector<std::string> take_notes();

 private:
  struct Traced {
    pid_t pid = 0;
    std::string vm_name;
    std::unique_ptr<pfilter::QemuAttach> attach;
    std::unique_ptr<correlator::QemuNodeReader> nodes;
  };
  Traced* find(std::uint32_t tgid);
  std::optional<VdiskKey> declare(std::uint32_t tgid, const correlator::NodeInfo& top);
  void on_qemu(const v2p_qemu_event& e);

  std::vector<Traced> traced_;
  std::unique_ptr<pfilter::Probe> probe_;  // null when a chain owns it
  correlator::Correlator own_corr_;
  correlator::Correlator* corr_ = &own_corr_;
  std::unique_ptr<correlator::UprobeJoin> join_;
  std::unique_ptr<StreamWriter> writer_;
  std::vector<VdiskDeclaration> declared_;
  std::uint32_t next_vm_ = 1;
  std::function<VdiskKey(const VdiskDeclaration&)> register_;
  std::vector<std::string> notes_;
};

// The VM name QEMU was given (-name NAME or -name guest=NAME,...), or empty.
std::string qemu_vm_name(pid_t pid);

}  // namespace v2p::cli
