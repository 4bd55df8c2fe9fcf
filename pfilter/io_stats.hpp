// The probe's in-kernel counters, read from user space: per device and op (requests, bytes,
// log2 latency histogram) and per {vm, vdisk} and op (bios, bytes). The maps are per CPU; a
// reader sums the CPUs. The same maps are the bpftool contract of docs/pfilter.md, so an agent
// can read them through the probe or from their pins (bpf_obj_get) with the same functions.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

namespace v2p::pfilter {

enum class OpClass : std::uint8_t { kRead = 0, kWrite = 1, kDiscard = 2, kOther = 3 };
[[nodiscard]] std::string_view op_class_name(OpClass op) noexcept;

inline constexpr std::size_t kLatencyBuckets = 32;

struct DeviceStats {
  std::uint32_t dev = 0;  // kernel dev_t of the disk (major << 20 | minor)
  OpClass op = OpClass::kRead;
  std::uint64_t ios = 0;  // completed requests
  std::uint64_t bytes = 0;
  // Bucket b: latencies in [2^b, 2^(b+1)) µs (bucket 0 also below 1 µs). Their sum can be below
  // ios: a queue that keeps no I/O statistics gives requests no start time.
  std::array<std::uint64_t, kLatencyBuckets> latency_us_log2{};
};

struct VdiskStats {
  std::uint32_t vm = 0;
  std::uint32_t vdisk = 0;
  OpClass op = OpClass::kRead;
  std::uint64_t ios = 0;  // bios queued with a known slot context
  std::uint64_t bytes = 0;
};

// Sorted by (dev, op) and (vm, vdisk, op). Throw v2p::Error when the map cannot be read.
[[nodiscard]] std::vector<DeviceStats> read_device_stats(int map_fd);
[[nodiscard]] std::vector<VdiskStats> read_vdisk_stats(int map_fd);

}  // namespace v2p::pfilter
