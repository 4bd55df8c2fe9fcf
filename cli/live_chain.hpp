// The whole chain in one process: the pfilter probe on the host devices, the vfilter export of
// the vdisks, and the correlator joining both. `v2p demo` and the end-to-end tests drive it; the
// caller decides when to pump, so no thread of its own races the caller's checks.
#pragma once

#include <filesystem>
#include <memory>
#include <vector>

#include "cli/attach_session.hpp"
#include "correlator/correlator.hpp"
#include "pfilter/probe.hpp"
#include "policy/host/policy_host.hpp"
#include "policy/host/record_tee.hpp"
#include "vfilter/agent_sink.hpp"
#include "vfilter/server.hpp"

namespace v2p::cli {

struct LiveChainOptions {
  std::vector<DeviceId> devices;  // host block devices the probe watches (kernel-side filter)
  std::vector<vfilter::VdiskConfig> vdisks;
  std::filesystem::path socket;  // the export's unix socket (mode 0600)
  // When set, pump() writes the live map there (correlator/snapshot.hpp, atomically, mode 0600)
  // at most every snapshot_interval_ms, and settle() once more: `v2p map/whose --snapshot` then
  // query the running chain, at most one interval (plus the join's settle time) behind.
  std::filesystem::path snapshot{};
  unsigned snapshot_interval_ms = 1000;
  // Policies to feed (not owned, started by the caller): the export's records and the
  // correlator's map changes, as `v2p serve --policy` does with the records alone.
  policy::PolicyHost* policies = nullptr;
  // When set, the export also streams to a `v2p agent` on this ingest socket (what `v2p serve
  // --agent` does), so the agent's views show the chain: `v2p demo`'s top view and web page.
  std::filesystem::path agent_ingest{};
  // Processes to attach to passively (docs/attach.md): e.g. the qemu-storage-daemon behind an
  // opaque vdisk, whose bios the uprobes then join exactly instead of by window.
  std::vector<pid_t> attach_pids{};
};

class LiveChain {
 public:
  // Attaches the probe first, so no I/O of the export can go unseen. Throws v2p::Error.
  explicit LiveChain(const LiveChainOptions& options);

  // Waits up to wait_ms for block-layer events, then moves everything both filters produced
  // into the correlator and closes the join windows that have ended.
  void pump(int wait_ms);
  // After the workload: lets the last events arrive, then closes every window.
  void settle();
  // Snapshots written so far (0 without LiveChainOptions::snapshot).
  [[nodiscard]] std::uint64_t snapshots_written() const noexcept { return snapshots_; }

  [[nodiscard]] const correlator::Correlator& correlator() const noexcept { return corr_; }
  // Bios the probe counted instead of sending because the map already knew them (0 on chains
  // that keep the full stream: opaque upstreams, backend stacks).
  [[nodiscard]] std::uint64_t suppressed_bios() const { return probe_->suppressed_bios(); }
  // Every completion-window assignment (tests check the confidence against ground truth).
  void set_window_observer(std::function<void(const correlator::WindowDecision&)> observer) {
    corr_.set_window_observer(std::move(observer));
  }
  [[nodiscard]] const std::filesystem::path& socket() const noexcept { return socket_; }
  // The passive attach, or null without LiveChainOptions::attach_pids.
  [[nodiscard]] const AttachSession* attach() const noexcept { return attach_.get(); }

 private:
  std::filesystem::path socket_;
  std::unique_ptr<pfilter::Probe> probe_;
  vfilter::QueueSink sink_;
  std::unique_ptr<policy::RecordTee> tee_;
  std::unique_ptr<vfilter::AgentSink> agent_sink_;
  std::unique_ptr<vfilter::Server> server_;
  correlator::Correlator corr_;
  std::unique_ptr<AttachSession> attach_;  // declared after corr_: detached before it goes
  std::vector<PhysEvent> events_;          // one poll's events, reused
  void write_snapshot();
  std::filesystem::path snapshot_path_;
  std::uint64_t snapshot_interval_ns_ = 0;
  std::uint64_t next_snapshot_ns_ = 0;
  std::uint64_t snapshots_ = 0;
};

}  // namespace v2p::cli
