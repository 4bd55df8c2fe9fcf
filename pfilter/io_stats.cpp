#include "pfilter/io_stats.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <map>
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

// Calls on_entry(per_cpu_values) for every index of a per-CPU array map of `entries`.
template <typename Value, typename OnEntry>
void for_each_percpu(int map_fd, std::uint32_t entries, const char* what, OnEntry on_entry) {
  const auto cpus = static_cast<std::size_t>(possible_cpus());
  std::vector<Value> values(cpus);
  for (std::uint32_t index = 0; index < entries; ++index) {
    if (bpf_map_lookup_elem(map_fd, &index, values.data()) != 0) {
      throw system_error(std::string("cannot read the pfilter ") + what);
    }
    on_entry(values);
  }
}

}  // namespace

// Each CPU places a key where its own probing found room (blockio.h), so entries of one key
// are summed over indexes and CPUs.
std::vector<DeviceStats> read_device_stats(int map_fd) {
  std::map<std::pair<std::uint32_t, std::uint32_t>, DeviceStats> by_key;
  for_each_percpu<v2p_device_stats>(map_fd, V2P_DEVICE_STATS_ENTRIES, "device counters",
                                    [&](const auto& per_cpu) {
                                      for (const auto& v : per_cpu) {
                                        if (!v.used) continue;
                                        auto& s = by_key[{v.dev, v.op_class}];
                                        s.dev = v.dev;
                                        s.op = static_cast<OpClass>(v.op_class);
                                        s.ios += v.ios;
                                        s.bytes += v.bytes;
                                        for (std::size_t b = 0; b < kLatencyBuckets; ++b) {
                                          s.latency_us_log2[b] += v.latency_us_log2[b];
                                        }
                                      }
                                    });
  std::vector<DeviceStats> out;
  for (auto& [key, s] : by_key) out.push_back(s);
  return out;
}

std::vector<VdiskStats> read_vdisk_stats(int map_fd) {
  std::map<std::tuple<std::uint32_t, std::uint32_t, std::uint32_t>, VdiskStats> by_key;
  for_each_percpu<v2p_vdisk_stats>(map_fd, V2P_VDISK_STATS_ENTRIES, "vdisk counters",
                                   [&](const auto& per_cpu) {
                                     for (const auto& v : per_cpu) {
                                       if (!v.used) continue;
                                       auto& s = by_key[{v.vm, v.vdisk, v.op_class}];
                                       s.vm = v.vm;
                                       s.vdisk = v.vdisk;
                                       s.op = static_cast<OpClass>(v.op_class);
                                       s.ios += v.ios;
                                       s.bytes += v.bytes;
                                     }
                                   });
  std::vector<VdiskStats> out;
  for (auto& [key, s] : by_key) out.push_back(s);
  return out;
}

}  // namespace v2p::pfilter
