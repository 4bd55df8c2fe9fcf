// `v2p top`'s numbers: rows per vdisk and per device from two observations of the agent
// (agent/observation.hpp) taken `seconds` apart. Pure, so the tests check the arithmetic.
#pragma once

#include <array>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agent/observation.hpp"

namespace v2p::cli {

inline constexpr std::size_t kTopLayers = 3;  // export, host file system, device
inline constexpr std::array<const char*, kTopLayers> kTopLayerNames{"export", "host", "device"};

struct TopVdiskRow {
  std::string vm, vdisk;
  double iops = 0, mb_s = 0;
  double read_share = 0;                        // of the requests in the interval
  std::array<double, kTopLayers> p50{}, p99{};  // seconds; 0: no request in the interval
  std::string devices;                          // "loop3 (7:3) ..."
};

struct TopDeviceRow {
  std::string device, name;
  double iops = 0, mb_s = 0;
  double p50 = 0, p99 = 0;
  // The vdisks on it with their request rates, busiest first: which VMs load the device.
  std::vector<std::pair<std::string, double>> users;
};

enum class TopSort { kIops, kThroughput, kLatency, kName };
// 'i', 'm', 'l', 'n' (also the --sort words iops, mbs, latency, name); nullopt otherwise.
[[nodiscard]] std::optional<TopSort> top_sort_from(std::string_view key);

struct TopModel {
  std::vector<TopVdiskRow> vdisks;
  std::vector<TopDeviceRow> devices;
};

// `prev` may be empty (no vdisks): the figures are then since each export started, and rates 0.
[[nodiscard]] TopModel top_model(const agent::Observation& prev, const agent::Observation& cur,
                                 double seconds, TopSort sort);
[[nodiscard]] nlohmann::json top_json(const TopModel& m);
// Plain-text tables (the --once output and the terminal UI's lines), `width` columns.
[[nodiscard]] std::vector<std::string> top_lines(const TopModel& m, bool device_view,
                                                 std::size_t width);

}  // namespace v2p::cli
