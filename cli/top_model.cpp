#include "cli/top_model.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <map>

namespace v2p::cli {
namespace {

using agent::OpsStats;

LayerHistogram delta(const LayerHistogram& now, const LayerHistogram* before) {
  LayerHistogram d = now;
  if (before == nullptr) return d;
  for (std::size_t b = 0; b < kLatencyBuckets; ++b) {
    // A counter that went down restarted (the export or agent did): take it as it is.
    if (before->buckets[b] > d.buckets[b]) return now;
    d.buckets[b] -= before->buckets[b];
  }
  d.count = now.count >= before->count ? now.count - before->count : now.count;
  d.sum_ns = now.sum_ns >= before->sum_ns ? now.sum_ns - before->sum_ns : now.sum_ns;
  return d;
}

struct Delta {
  std::uint64_t requests = 0, bytes = 0, reads = 0;
  LayerHistogram latency;
};

Delta delta_all(const OpsStats& now, const OpsStats* before) {
  Delta d;
  for (std::size_t op = 0; op < kOpClasses; ++op) {
    const auto& n = now[op];
    const OpLayerStats* b = before != nullptr ? &(*before)[op] : nullptr;
    const bool reset = b != nullptr && (b->requests > n.requests || b->bytes > n.bytes);
    const std::uint64_t req = b != nullptr && !reset ? n.requests - b->requests : n.requests;
    d.requests += req;
    d.bytes += b != nullptr && !reset ? n.bytes - b->bytes : n.bytes;
    if (op == 0) d.reads += req;
    d.latency.merge(delta(n.latency, b != nullptr && !reset ? &b->latency : nullptr));
  }
  return d;
}

std::string dev_name(const agent::DeviceObservation& d) {
  return fmt::format("{}:{}", d.device.major(), d.device.minor());
}

std::string time_text(double s) {
  if (s <= 0) return "-";
  if (s < 1e-3) return fmt::format("{:.0f}us", s * 1e6);
  if (s < 1) return fmt::format("{:.2f}ms", s * 1e3);
  return fmt::format("{:.2f}s", s);
}

}  // namespace

std::optional<TopSort> top_sort_from(std::string_view key) {
  if (key == "i" || key == "iops") return TopSort::kIops;
  if (key == "m" || key == "mbs") return TopSort::kThroughput;
  if (key == "l" || key == "latency") return TopSort::kLatency;
  if (key == "n" || key == "name") return TopSort::kName;
  return std::nullopt;
}

TopModel top_model(const agent::Observation& prev, const agent::Observation& cur, double seconds,
                   TopSort sort) {
  TopModel m;
  const bool rates = seconds > 0 && !prev.vdisks.empty();
  const double per_s = rates ? 1 / seconds : 0;
  std::map<std::pair<std::string, std::string>, const agent::VdiskObservation*> before;
  for (const auto& v : prev.vdisks) before[{v.vm, v.vdisk}] = &v;
  std::map<DeviceId, const agent::DeviceObservation*> dev_before, dev_now;
  for (const auto& d : prev.devices) dev_before[d.device] = &d;
  for (const auto& d : cur.devices) dev_now[d.device] = &d;
  std::map<DeviceId, Delta> dev_delta;
  for (const auto& d : cur.devices) {
    const auto it = dev_before.find(d.device);
    dev_delta[d.device] = delta_all(d.ops, it != dev_before.end() ? &it->second->ops : nullptr);
  }
  std::map<DeviceId, std::vector<std::pair<std::string, double>>> users;
  for (const auto& v : cur.vdisks) {
    const auto it = before.find({v.vm, v.vdisk});
    const agent::VdiskObservation* b = it != before.end() ? it->second : nullptr;
    const Delta ex = delta_all(v.export_ops, b != nullptr ? &b->export_ops : nullptr);
    const Delta host = delta_all(v.host_ops, b != nullptr ? &b->host_ops : nullptr);
    LayerHistogram device;
    TopVdiskRow r;
    r.vm = v.vm;
    r.vdisk = v.vdisk;
    for (const auto d : v.devices) {
      if (const auto dd = dev_delta.find(d); dd != dev_delta.end())
        device.merge(dd->second.latency);
      const auto n = dev_now.find(d);
      r.devices += fmt::format("{}{}", r.devices.empty() ? "" : " ",
                               n != dev_now.end() && !n->second->name.empty()
                                   ? n->second->name
                                   : fmt::format("{}:{}", d.major(), d.minor()));
    }
    r.iops = static_cast<double>(ex.requests) * per_s;
    r.mb_s = static_cast<double>(ex.bytes) * per_s / 1e6;
    r.read_share =
        ex.requests == 0 ? 0 : static_cast<double>(ex.reads) / static_cast<double>(ex.requests);
    const std::array<const LayerHistogram*, kTopLayers> layers{&ex.latency, &host.latency, &device};
    for (std::size_t l = 0; l < kTopLayers; ++l) {
      r.p50[l] = layers[l]->quantile_seconds(0.5);
      r.p99[l] = layers[l]->quantile_seconds(0.99);
    }
    for (const auto d : v.devices) users[d].emplace_back(v.vm + "/" + v.vdisk, r.iops);
    m.vdisks.push_back(std::move(r));
  }
  for (const auto& d : cur.devices) {
    const Delta& x = dev_delta[d.device];
    TopDeviceRow r;
    r.device = dev_name(d);
    r.name = d.name;
    r.iops = static_cast<double>(x.requests) * per_s;
    r.mb_s = static_cast<double>(x.bytes) * per_s / 1e6;
    r.p50 = x.latency.quantile_seconds(0.5);
    r.p99 = x.latency.quantile_seconds(0.99);
    r.users = users[d.device];
    std::sort(r.users.begin(), r.users.end(),
              [](const auto& a, const auto& b) { return a.second > b.second; });
    m.devices.push_back(std::move(r));
  }
  const auto by = [sort](const auto& a, const auto& b, const std::string& an, const std::string& bn,
                         double al, double bl) {
    switch (sort) {
      case TopSort::kIops:
        return a.iops != b.iops ? a.iops > b.iops : an < bn;
      case TopSort::kThroughput:
        return a.mb_s != b.mb_s ? a.mb_s > b.mb_s : an < bn;
      case TopSort::kLatency:
        return al != bl ? al > bl : an < bn;
      case TopSort::kName:
        break;
    }
    return an < bn;
  };
  std::sort(m.vdisks.begin(), m.vdisks.end(), [&](const auto& a, const auto& b) {
    return by(a, b, a.vm + "/" + a.vdisk, b.vm + "/" + b.vdisk, a.p99[0], b.p99[0]);
  });
  std::sort(m.devices.begin(), m.devices.end(),
            [&](const auto& a, const auto& b) { return by(a, b, a.name, b.name, a.p99, b.p99); });
  return m;
}

nlohmann::json top_json(const TopModel& m) {
  using nlohmann::json;
  json vdisks = json::array();
  for (const auto& r : m.vdisks) {
    json lat = json::object();
    for (std::size_t l = 0; l < kTopLayers; ++l) {
      lat[kTopLayerNames[l]] = {{"p50_s", r.p50[l]}, {"p99_s", r.p99[l]}};
    }
    vdisks.push_back({{"vm", r.vm},
                      {"vdisk", r.vdisk},
                      {"iops", r.iops},
                      {"mb_s", r.mb_s},
                      {"read_share", r.read_share},
                      {"latency", std::move(lat)},
                      {"devices", r.devices}});
  }
  json devices = json::array();
  for (const auto& r : m.devices) {
    json users = json::array();
    for (const auto& [name, iops] : r.users) users.push_back({{"vdisk", name}, {"iops", iops}});
    devices.push_back({{"device", r.device},
                       {"name", r.name},
                       {"iops", r.iops},
                       {"mb_s", r.mb_s},
                       {"p50_s", r.p50},
                       {"p99_s", r.p99},
                       {"vdisks", std::move(users)}});
  }
  return {{"vdisks", std::move(vdisks)}, {"devices", std::move(devices)}};
}

std::vector<std::string> top_lines(const TopModel& m, bool device_view, std::size_t width) {
  std::vector<std::string> out;
  const auto add = [&](std::string s) {
    if (s.size() > width) s.resize(width);
    out.push_back(std::move(s));
  };
  if (!device_view) {
    add(fmt::format("{:<12} {:<8} {:>9} {:>8} {:>5} {:>17} {:>17} {:>17}  {}", "VM", "VDISK",
                    "IOPS", "MB/s", "RD%", "EXPORT p50/p99", "HOSTFS p50/p99", "DEVICE p50/p99",
                    "DEVICES"));
    for (const auto& r : m.vdisks) {
      std::array<std::string, kTopLayers> lat;
      for (std::size_t l = 0; l < kTopLayers; ++l) {
        lat[l] = fmt::format("{}/{}", time_text(r.p50[l]), time_text(r.p99[l]));
      }
      add(fmt::format("{:<12} {:<8} {:>9.0f} {:>8.2f} {:>5.0f} {:>17} {:>17} {:>17}  {}", r.vm,
                      r.vdisk, r.iops, r.mb_s, 100 * r.read_share, lat[0], lat[1], lat[2],
                      r.devices));
    }
    return out;
  }
  add(fmt::format("{:<10} {:<8} {:>9} {:>8} {:>17}  {}", "DEVICE", "MAJ:MIN", "IOPS", "MB/s",
                  "p50/p99", "LOADED BY (vm/vdisk IOPS)"));
  for (const auto& r : m.devices) {
    std::string users;
    for (const auto& [name, iops] : r.users) {
      users += fmt::format("{}{} {:.0f}", users.empty() ? "" : ", ", name, iops);
    }
    add(fmt::format("{:<10} {:<8} {:>9.0f} {:>8.2f} {:>17}  {}", r.name.empty() ? "?" : r.name,
                    r.device, r.iops, r.mb_s,
                    fmt::format("{}/{}", time_text(r.p50), time_text(r.p99)), users));
  }
  return out;
}

}  // namespace v2p::cli
