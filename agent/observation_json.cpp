#include "agent/observation_json.hpp"

#include <fmt/core.h>

#include <cstdio>

namespace v2p::agent {
namespace {

using nlohmann::json;

std::string dev(DeviceId d) {
  return fmt::format("{}:{}", d.major(), d.minor());
}

DeviceId parse_dev(const std::string& s) {
  unsigned ma = 0, mi = 0;
  if (std::sscanf(s.c_str(), "%u:%u", &ma, &mi) != 2)
    throw json::other_error::create(501, "bad device " + s, nullptr);
  return DeviceId::from_major_minor(ma, mi);
}

// Op classes without a request are left out; buckets stop at the last non-empty one.
json ops_json(const OpsStats& ops) {
  json out = json::object();
  for (std::size_t op = 0; op < kOpClasses; ++op) {
    const auto& s = ops[op];
    if (s.requests == 0 && s.latency.count == 0) continue;
    std::size_t n = kLatencyBuckets;
    while (n > 0 && s.latency.buckets[n - 1] == 0) --n;
    out[op_class3_name(op)] = {
        {"requests", s.requests},
        {"bytes", s.bytes},
        {"sum_ns", s.latency.sum_ns},
        {"p50_s", s.latency.quantile_seconds(0.5)},
        {"p99_s", s.latency.quantile_seconds(0.99)},
        {"buckets", std::vector<std::uint64_t>(s.latency.buckets.begin(),
                                               s.latency.buckets.begin() + static_cast<long>(n))}};
  }
  return out;
}

OpsStats ops_from_json(const json& in) {
  OpsStats ops{};
  for (std::size_t op = 0; op < kOpClasses; ++op) {
    const auto it = in.find(op_class3_name(op));
    if (it == in.end()) continue;
    auto& s = ops[op];
    s.requests = it->at("requests").get<std::uint64_t>();
    s.bytes = it->at("bytes").get<std::uint64_t>();
    s.latency.sum_ns = it->at("sum_ns").get<std::uint64_t>();
    const auto& b = it->at("buckets");
    for (std::size_t i = 0; i < b.size() && i < kLatencyBuckets; ++i) {
      s.latency.buckets[i] = b[i].get<std::uint64_t>();
      s.latency.count += s.latency.buckets[i];
    }
  }
  return ops;
}

}  // namespace

void add_observation(json& out, const Observation& o) {
  json vdisks = json::array();
  for (const auto& v : o.vdisks) {
    json devs = json::array();
    for (const auto d : v.devices) devs.push_back(dev(d));
    vdisks.push_back(
        {{"vm", v.vm},
         {"vdisk", v.vdisk},
         {"image", v.image},
         {"connected", v.connected},
         {"mapped_bytes", v.mapped_bytes},
         {"devices", std::move(devs)},
         {"layers", {{"export", ops_json(v.export_ops)}, {"host", ops_json(v.host_ops)}}}});
  }
  json devices = json::array();
  for (const auto& d : o.devices) {
    devices.push_back(
        {{"device", dev(d.device)}, {"name", d.name}, {"layers", {{"device", ops_json(d.ops)}}}});
  }
  out["taken_ns"] = o.taken_ns;
  out["vdisks"] = std::move(vdisks);
  out["devices"] = std::move(devices);
}

Observation observation_from_json(const json& in) {
  Observation o;
  o.taken_ns = in.value("taken_ns", std::uint64_t{0});
  o.extents = in.value("extents", std::uint64_t{0});
  for (const auto& j : in.at("vdisks")) {
    auto& v = o.vdisks.emplace_back();
    v.vm = j.at("vm").get<std::string>();
    v.vdisk = j.at("vdisk").get<std::string>();
    v.image = j.value("image", "");
    v.connected = j.value("connected", false);
    v.mapped_bytes = j.value("mapped_bytes", std::uint64_t{0});
    for (const auto& d : j.at("devices")) v.devices.push_back(parse_dev(d.get<std::string>()));
    v.export_ops = ops_from_json(j.at("layers").at("export"));
    v.host_ops = ops_from_json(j.at("layers").at("host"));
  }
  for (const auto& j : in.at("devices")) {
    auto& d = o.devices.emplace_back();
    d.device = parse_dev(j.at("device").get<std::string>());
    d.name = j.value("name", "");
    d.ops = ops_from_json(j.at("layers").at("device"));
  }
  return o;
}

}  // namespace v2p::agent
