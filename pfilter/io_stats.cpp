#include "pfilter/io_stats.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <tuple>
#include <utility>

#include "common/error.hpp"
#include "pfilter/blockio.h"

namespace v2p::pfilter {

static_assert(kLatencyBuckets == V2P_LATENCY_BUCKETS);
static_assert(static_cast<int>(OpClass::kRead) == V2P_OP_READ &&
              static_cast<int>(OpClass::kWrite) == V2P_OP_WRITE &&
              static_cast<int>(OpClass::kDiscard) == V2P_OP_DISCARD &&
              static_cast<int>(OpClass::kOther) == V2P_OP_OTHER);

std::string_view op_class_name(OpClass op) noexcept {
  switch (op) {
    case OpClass::kRead:
      return "read";
    case OpClass::kWrite:
      return "write";
    case OpClass::kDiscard:
      return "discard";
    case OpClass::kOther:
      return "other";
  }
  return "other";
}

namespace {

int possible_cpus() {
  const int n = libbpf_num_possible_cpus();
  if (n <= 0) throw system_error("cannot count the possible CPUs", -n);
  return n;
}

// Calls on_entry(key, per_cpu_values) for every key of a per-CPU hash map.
template <typename Key, typename Value, typename OnEntry>
void for_each_percpu(int map_fd, const char* what, OnEntry on_entry) {
  const auto cpus = static_cast<std::size_t>(possible_cpus());
  std::vector<Value> values(cpus);
  Key key{};
  Key next{};
  const Key* prev = nullptr;
  while (bpf_map_get_next_key(map_fd, prev, &next) == 0) {
    // An entry deleted between the two calls is skipped (ENOENT); the maps only grow.
    if (bpf_map_lookup_elem(map_fd, &next, values.data()) == 0) on_entry(next, values);
    key = next;
    prev = &key;
  }
  if (errno != ENOENT) throw system_error(std::string("cannot read the pfilter ") + what);
}

}  // namespace

std::vector<DeviceStats> read_device_stats(int map_fd) {
  std::vector<DeviceStats> out;
  for_each_percpu<v2p_device_stats_key, v2p_device_stats>(
      map_fd, "device counters", [&](const v2p_device_stats_key& k, const auto& per_cpu) {
        DeviceStats s;
        s.dev = k.dev;
        s.op = static_cast<OpClass>(k.op_class);
        for (const auto& v : per_cpu) {
          s.ios += v.ios;
          s.bytes += v.bytes;
          for (std::size_t b = 0; b < kLatencyBuckets; ++b) {
            s.latency_us_log2[b] += v.latency_us_log2[b];
          }
        }
        out.push_back(s);
      });
  std::sort(out.begin(), out.end(), [](const DeviceStats& a, const DeviceStats& b) {
    return std::pair(a.dev, a.op) < std::pair(b.dev, b.op);
  });
  return out;
}

std::vector<VdiskStats> read_vdisk_stats(int map_fd) {
  std::vector<VdiskStats> out;
  for_each_percpu<v2p_vdisk_stats_key, v2p_vdisk_stats>(
      map_fd, "vdisk counters", [&](const v2p_vdisk_stats_key& k, const auto& per_cpu) {
        VdiskStats s;
        s.vm = k.vm;
        s.vdisk = k.vdisk;
        s.op = static_cast<OpClass>(k.op_class);
        for (const auto& v : per_cpu) {
          s.ios += v.ios;
          s.bytes += v.bytes;
        }
        out.push_back(s);
      });
  std::sort(out.begin(), out.end(), [](const VdiskStats& a, const VdiskStats& b) {
    return std::tuple(a.vm, a.vdisk, a.op) < std::tuple(b.vm, b.vdisk, b.op);
  });
  return out;
}

}  // namespace v2p::pfilter
