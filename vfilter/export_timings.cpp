#include "vfilter/export_timings.hpp"

#include <algorithm>

namespace v2p::vfilter {

ExportTimings::Vdisk* ExportTimings::get(std::uint32_t vm_id, std::uint32_t vdisk_id) {
  std::lock_guard lock(mu_);
  for (auto& v : vdisks_) {
    if (v.vm_id == vm_id && v.vdisk_id == vdisk_id) return &v;
  }
  auto& v = vdisks_.emplace_back();
  v.vm_id = vm_id;
  v.vdisk_id = vdisk_id;
  return &v;
}

std::vector<ingest::ExportLatency> ExportTimings::snapshot() const {
  std::vector<ingest::ExportLatency> out;
  std::lock_guard lock(mu_);
  for (const auto& v : vdisks_) {
    for (std::size_t op = 0; op < kOpClasses; ++op) {
      const OpLayerStats s = v.ops[op].load();
      if (s.requests == 0) continue;
      ingest::ExportLatency l;
      l.vm_id = v.vm_id;
      l.vdisk_id = v.vdisk_id;
      l.op = static_cast<std::uint32_t>(op);
      l.requests = s.requests;
      l.bytes = s.bytes;
      l.sum_ns = s.latency.sum_ns;
      std::copy(s.latency.buckets.begin(), s.latency.buckets.end(), l.buckets);
      out.push_back(l);
    }
  }
  return out;
}

}  // namespace v2p::vfilter
