#include "agent/io_layers.hpp"

#include <algorithm>
#include <iterator>

namespace v2p::agent {

std::size_t op_class_of(IoOp op) noexcept {
  switch (op) {
    case IoOp::kRead:
      return 0;
    case IoOp::kWrite:
      return 1;
    default:
      return 2;
  }
}

void IoLayers::host_io(const ContextRecord& r) noexcept {
  const VdiskKey key = r.key();
  if (last_ == nullptr || key != last_key_) {
    last_ = &host_[key];
    last_key_ = key;
  }
  auto& s = (*last_)[op_class_of(static_cast<IoOp>(r.op))];
  ++s.requests;
  if (r.result >= 0 && (r.op == 0 || r.op == 1)) s.bytes += r.length;
  s.latency.add(r.complete_ns > r.submit_ns ? r.complete_ns - r.submit_ns : 0);
}

void IoLayers::export_figures(std::uint64_t conn, VdiskKey key, const ingest::ExportLatency& l) {
  auto& s = live_[key][conn][std::min<std::size_t>(l.op, kOpClasses - 1)];
  s.requests = l.requests;
  s.bytes = l.bytes;
  s.latency.sum_ns = l.sum_ns;
  s.latency.count = 0;
  for (std::size_t b = 0; b < kLatencyBuckets; ++b) {
    s.latency.buckets[b] = l.buckets[b];
    s.latency.count += l.buckets[b];
  }
}

void IoLayers::export_gone(std::uint64_t conn) {
  for (auto& [key, conns] : live_) {
    const auto it = conns.find(conn);
    if (it == conns.end()) continue;
    auto& total = closed_[key];
    for (std::size_t op = 0; op < kOpClasses; ++op) total[op].merge(it->second[op]);
    conns.erase(it);
  }
}

void IoLayers::drop(VdiskKey key) {
  closed_.erase(key);
  host_.erase(key);
  live_.erase(key);
  last_ = nullptr;
}

OpsStats IoLayers::export_ops(VdiskKey key) const {
  OpsStats out{};
  if (const auto it = closed_.find(key); it != closed_.end()) out = it->second;
  if (const auto it = live_.find(key); it != live_.end()) {
    for (const auto& [conn, ops] : it->second) {
      for (std::size_t op = 0; op < kOpClasses; ++op) out[op].merge(ops[op]);
    }
  }
  return out;
}

OpsStats IoLayers::host_ops(VdiskKey key) const {
  const auto it = host_.find(key);
  return it == host_.end() ? OpsStats{} : it->second;
}

}  // namespace v2p::agent
