// Per-vdisk latency of the two layers the agent learns from the exports: the export layer (NBD
// request in -> reply out, cumulative figures each export sends about once a second) and the
// host file system (host I/O submit -> complete, from every context record's timestamps). The
// device layer comes from the probe's in-kernel counters (pfilter/io_stats.hpp), per device.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <utility>

#include "common/ingest_wire.hpp"
#include "common/latency_histogram.hpp"
#include "v2p/records.hpp"

namespace v2p::agent {

using OpsStats = std::array<OpLayerStats, kOpClasses>;

[[nodiscard]] std::size_t op_class_of(IoOp op) noexcept;

class IoLayers {
 public:
  // A record whose ids are already the agent's.
  void host_io(const ContextRecord& r) noexcept;
  // The latest cumulative figures of one export connection (`conn`) for a vdisk (agent ids).
  void export_figures(std::uint64_t conn, VdiskKey key, const ingest::ExportLatency& l);
  // That export is gone: its last figures stay in the vdisk's totals.
  void export_gone(std::uint64_t conn);
  // The vdisk left the agent: its figures go (a later one starts from zero, as a counter may).
  void drop(VdiskKey key);

  [[nodiscard]] OpsStats export_ops(VdiskKey key) const;
  [[nodiscard]] OpsStats host_ops(VdiskKey key) const;

 private:
  std::map<VdiskKey, std::map<std::uint64_t, OpsStats>> live_;  // by export connection
  std::map<VdiskKey, OpsStats> closed_;
  std::map<VdiskKey, OpsStats> host_;
  VdiskKey last_key_{};
  OpsStats* last_ = nullptr;  // records come in runs of one vdisk
};

}  // namespace v2p::agent
