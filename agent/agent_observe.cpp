// Agent::observe(): the picture every view renders (agent/observation.hpp), on the agent's thread.
#include <fmt/core.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "agent/agent.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "pfilter/io_stats.hpp"

namespace v2p::agent {
namespace {

std::string sysfs_name(DeviceId d) {
  std::ifstream in(fmt::format("/sys/dev/block/{}:{}/uevent", d.major(), d.minor()));
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("DEVNAME=")) return line.substr(8);
  }
  return {};
}

std::size_t op_class_of(pfilter::OpClass op) noexcept {
  switch (op) {
    case pfilter::OpClass::kRead:
      return 0;
    case pfilter::OpClass::kWrite:
      return 1;
    default:
      return 2;
  }
}

}  // namespace

Observation Agent::observe() {
  Observation o;
  o.taken_ns = monotonic_ns();
  o.extents = corr_.map().extent_count();
  o.records_ingested = stats_.records_ingested;
  o.records_lost = stats_.records_lost;
  o.exports_connected = exports_.size();
  std::set<DeviceId> devices;
  for (const auto& [names, key] : vdisk_ids_) {
    const auto live = vdisk_exports_.find(key);
    const bool connected = live != vdisk_exports_.end() && live->second > 0;
    const std::uint64_t mapped = corr_.map().mapped_bytes(key);
    if (!connected && mapped == 0) continue;  // as `v2p status` lists them
    auto& v = o.vdisks.emplace_back();
    v.vm = names.first;
    v.vdisk = names.second;
    v.key = key;
    v.connected = connected;
    v.mapped_bytes = mapped;
    if (const auto d = corr_.vdisk(key)) v.image = d->image_path;
    v.export_ops = layers_.export_ops(key);
    v.host_ops = layers_.host_ops(key);
    if (const auto it = vdisk_devices_.find(key); it != vdisk_devices_.end()) {
      v.devices = it->second;
      devices.insert(it->second.begin(), it->second.end());
    }
  }
  std::vector<pfilter::DeviceStats> kernel;
  if (const pfilter::Probe* probe = devices_.probe()) {
    try {
      kernel = probe->device_stats();
    } catch (const Error& e) {
      o_.log(fmt::format("device counters not read: {}", e.what()));
    }
  }
  for (const DeviceId d : devices) {
    auto& out = o.devices.emplace_back();
    out.device = d;
    auto [it, fresh] = device_names_.try_emplace(d.kernel());
    if (fresh) it->second = sysfs_name(d);
    out.name = it->second;
    for (const auto& k : kernel) {
      if (k.dev != d.kernel()) continue;
      auto& s = out.ops[op_class_of(k.op)];
      s.requests += k.ios;
      s.bytes += k.bytes;
      for (std::size_t b = 0; b < kLatencyBuckets; ++b) {
        s.latency.buckets[b] += k.latency_us_log2[b];
        s.latency.count += k.latency_us_log2[b];
        // The kernel keeps no sum: estimated at each bucket's middle (1.5 * 2^b µs).
        s.latency.sum_ns += k.latency_us_log2[b] * ((std::uint64_t{3} << b) * 500);
      }
    }
  }
  return o;
}

}  // namespace v2p::agent
