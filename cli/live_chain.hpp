// The whole chain in one process: the pfilter probe on the host devices, the vfilter export of
// the vdisks, and the correlator joining both. `v2p demo` and the end-to-end tests drive it; the
// caller decides when to pump, so no thread of its own races the caller's checks.
#pragma once

#include <filesystem>
#include <memory>
#include <vector>

#include "correlator/correlator.hpp"
#include "pfilter/probe.hpp"
#include "policy/host/policy_host.hpp"
#include "policy/host/record_tee.hpp"
#include "vfilter/server.hpp"

namespace v2p::cli {

struct LiveChainOptions {
  std::vector<DeviceId> devices;  // host block devices the probe watches (kernel-side filter)
  std::vector<vfilter::VdiskConfig> vdisks;
  std::filesystem::path socket;  // the export's unix socket (mode 0600)
  // Policies to feed (not owned, started by the caller): the export's records and the
  // correlator's map changes, as `v2p serve --policy` does with the records alone.
  policy::PolicyHost* policies = nullptr;
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

  [[nodiscard]] const correlator::Correlator& correlator() const noexcept { return corr_; }
  [[nodiscard]] const std::filesystem::path& socket() const noexcept { return socket_; }

 private:
  std::filesystem::path socket_;
  std::unique_ptr<pfilter::Probe> probe_;
  vfilter::QueueSink sink_;
  std::unique_ptr<policy::RecordTee> tee_;
  std::unique_ptr<vfilter::Server> server_;
  correlator::Correlator corr_;
};

}  // namespace v2p::cli
