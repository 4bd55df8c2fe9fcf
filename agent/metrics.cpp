#include "agent/metrics.hpp"

#include <fmt/format.h>

#include <array>
#include <iterator>
#include <string_view>

namespace v2p::agent {
namespace {

// A string, not fmt::memory_buffer: the page is returned without a 5 MB copy at the end.
using Out = std::string;

// The `le` bounds exported: every other power of two from 4 µs to 16.8 s (the buckets of
// common/latency_histogram.hpp, cumulated; a factor of 4 between bounds keeps a scrape of
// 1 000 vdisks small); below and above fold into the neighbours and +Inf.
constexpr std::size_t kFirstBucket = 1;  // le = 4 µs
constexpr std::size_t kLastBucket = 23;  // le = 16.777216 s
constexpr std::size_t kBucketStep = 2;

// The `le` texts, formatted once.
const std::array<std::string, kLatencyBuckets>& le_texts() {
  static const auto texts = [] {
    std::array<std::string, kLatencyBuckets> t;
    for (std::size_t b = 0; b < kLatencyBuckets; ++b) {
      t[b] = fmt::format("{}", latency_bucket_upper_seconds(b));
    }
    return t;
  }();
  return texts;
}

void append(Out& out, std::string_view s) {
  out.append(s);
}

void append(Out& out, std::uint64_t v) {
  const fmt::format_int f(v);
  out.append(f.data(), f.size());
}

// Label values: backslash, double quote and newline escaped (the exposition format's rules).
void label(Out& out, std::string_view name, std::string_view value) {
  fmt::format_to(std::back_inserter(out), "{}=\"", name);
  for (const char c : value) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out.push_back('\\');
      out.push_back('n');
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

std::string vdisk_labels(const VdiskObservation& v) {
  Out out;
  label(out, "vm", v.vm);
  out.push_back(',');
  label(out, "vdisk", v.vdisk);
  return out;
}

std::string device_labels(const DeviceObservation& d) {
  Out out;
  label(out, "device", fmt::format("{}:{}", d.device.major(), d.device.minor()));
  return out;
}

void header(Out& out, std::string_view name, std::string_view type, std::string_view help) {
  fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

void histogram(Out& out, std::string_view name, const std::string& labels, const char* op,
               const LayerHistogram& h) {
  // One prefix per histogram, then only the bound and the count per line: the scrape's hot loop.
  const std::string prefix = fmt::format("{}_bucket{{{},op=\"{}\",le=\"", name, labels, op);
  const auto& le = le_texts();
  std::uint64_t cum = 0;
  for (std::size_t b = 0; b < kFirstBucket; ++b) cum += h.buckets[b];
  for (std::size_t b = kFirstBucket; b <= kLastBucket; ++b) {
    cum += h.buckets[b];
    if ((b - kFirstBucket) % kBucketStep != 0) continue;
    append(out, prefix);
    append(out, le[b]);
    append(out, "\"} ");
    append(out, cum);
    out.push_back('\n');
  }
  append(out, prefix);
  append(out, "+Inf\"} ");
  append(out, h.count);
  out.push_back('\n');
  fmt::format_to(std::back_inserter(out), "{}_sum{{{},op=\"{}\"}} {}\n", name, labels, op,
                 static_cast<double>(h.sum_ns) * 1e-9);
  fmt::format_to(std::back_inserter(out), "{}_count{{{},op=\"{}\"}} {}\n", name, labels, op,
                 h.count);
}

template <class Get>
void per_op_counter(Out& out, std::string_view name, const std::string& labels, const OpsStats& ops,
                    Get get) {
  for (std::size_t op = 0; op < kOpClasses; ++op) {
    if (ops[op].requests == 0) continue;
    fmt::format_to(std::back_inserter(out), "{}{{{},op=\"{}\"}} {}\n", name, labels,
                   op_class3_name(op), get(ops[op]));
  }
}

void per_op_histogram(Out& out, std::string_view name, const std::string& labels,
                      const OpsStats& ops) {
  for (std::size_t op = 0; op < kOpClasses; ++op) {
    if (ops[op].latency.count == 0) continue;
    histogram(out, name, labels, op_class3_name(op), ops[op].latency);
  }
}

}  // namespace

std::string render_metrics(const Observation& o) {
  Out out;
  out.reserve(4096 + o.vdisks.size() * 6144 + o.devices.size() * 4096);
  std::vector<std::string> vl;
  vl.reserve(o.vdisks.size());
  for (const auto& v : o.vdisks) vl.push_back(vdisk_labels(v));
  std::vector<std::string> dl;
  for (const auto& d : o.devices) dl.push_back(device_labels(d));
  const auto requests = [](const OpLayerStats& s) { return s.requests; };
  const auto bytes = [](const OpLayerStats& s) { return s.bytes; };

  header(out, "v2p_map_extents", "gauge", "Extents in the agent's V2P map.");
  fmt::format_to(std::back_inserter(out), "v2p_map_extents {}\n", o.extents);
  header(out, "v2p_exports_connected", "gauge", "Export processes connected to the agent.");
  fmt::format_to(std::back_inserter(out), "v2p_exports_connected {}\n", o.exports_connected);
  header(out, "v2p_records_ingested_total", "counter", "Context records received from exports.");
  fmt::format_to(std::back_inserter(out), "v2p_records_ingested_total {}\n", o.records_ingested);
  header(out, "v2p_records_lost_total", "counter",
         "Context records the exports could not deliver (queue full, agent away).");
  fmt::format_to(std::back_inserter(out), "v2p_records_lost_total {}\n", o.records_lost);

  header(out, "v2p_vdisk_mapped_bytes", "gauge", "Bytes of the vdisk the V2P map places.");
  for (std::size_t i = 0; i < o.vdisks.size(); ++i) {
    fmt::format_to(std::back_inserter(out), "v2p_vdisk_mapped_bytes{{{}}} {}\n", vl[i],
                   o.vdisks[i].mapped_bytes);
  }
  header(out, "v2p_vdisk_device_info", "gauge",
         "1 for each physical device under a vdisk's image (join on device).");
  for (std::size_t i = 0; i < o.vdisks.size(); ++i) {
    for (const auto d : o.vdisks[i].devices) {
      fmt::format_to(std::back_inserter(out), "v2p_vdisk_device_info{{{},device=\"{}:{}\"}} 1\n",
                     vl[i], d.major(), d.minor());
    }
  }
  header(out, "v2p_vdisk_requests_total", "counter", "NBD requests the export answered.");
  for (std::size_t i = 0; i < o.vdisks.size(); ++i) {
    per_op_counter(out, "v2p_vdisk_requests_total", vl[i], o.vdisks[i].export_ops, requests);
  }
  header(out, "v2p_vdisk_bytes_total", "counter", "Bytes the export read or wrote for the VM.");
  for (std::size_t i = 0; i < o.vdisks.size(); ++i) {
    per_op_counter(out, "v2p_vdisk_bytes_total", vl[i], o.vdisks[i].export_ops, bytes);
  }
  header(out, "v2p_vdisk_export_latency_seconds", "histogram",
         "Export layer: NBD request received to reply sent.");
  for (std::size_t i = 0; i < o.vdisks.size(); ++i) {
    per_op_histogram(out, "v2p_vdisk_export_latency_seconds", vl[i], o.vdisks[i].export_ops);
  }
  header(out, "v2p_vdisk_host_latency_seconds", "histogram",
         "Host file system layer: host I/O submitted to completed.");
  for (std::size_t i = 0; i < o.vdisks.size(); ++i) {
    per_op_histogram(out, "v2p_vdisk_host_latency_seconds", vl[i], o.vdisks[i].host_ops);
  }

  header(out, "v2p_device_info", "gauge", "1 per probed device, with its kernel name.");
  for (std::size_t i = 0; i < o.devices.size(); ++i) {
    Out l;
    label(l, "name", o.devices[i].name);
    fmt::format_to(std::back_inserter(out), "v2p_device_info{{{},{}}} 1\n", dl[i], l);
  }
  header(out, "v2p_device_requests_total", "counter", "Requests the device completed (probe).");
  for (std::size_t i = 0; i < o.devices.size(); ++i) {
    per_op_counter(out, "v2p_device_requests_total", dl[i], o.devices[i].ops, requests);
  }
  header(out, "v2p_device_bytes_total", "counter", "Bytes the device transferred (probe).");
  for (std::size_t i = 0; i < o.devices.size(); ++i) {
    per_op_counter(out, "v2p_device_bytes_total", dl[i], o.devices[i].ops, bytes);
  }
  header(out, "v2p_device_latency_seconds", "histogram",
         "Device layer: request issued to completed (probe; _sum estimated from the buckets).");
  for (std::size_t i = 0; i < o.devices.size(); ++i) {
    per_op_histogram(out, "v2p_device_latency_seconds", dl[i], o.devices[i].ops);
  }
  return out;
}

}  // namespace v2p::agent
