// What the agent's views show (`v2p top`, /metrics, the web page, the `stats` query): one
// consistent picture taken on the agent's thread, then rendered anywhere without locks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "agent/io_layers.hpp"
#include "v2p/types.hpp"

namespace v2p::agent {

struct VdiskObservation {
  std::string vm, vdisk, image;
  VdiskKey key{};
  bool connected = false;  // an export declares it now
  std::uint64_t extents = 0;
  std::uint64_t mapped_bytes = 0;
  OpsStats export_ops{};          // NBD request in -> reply out
  OpsStats host_ops{};            // host I/O submit -> complete
  std::vector<DeviceId> devices;  // the probed devices under its image
};

struct DeviceObservation {
  DeviceId device;
  std::string name;  // "loop3", "" when sysfs does not say
  OpsStats ops{};    // device layer: request issue -> complete (the probe's counters)
};

struct Observation {
  std::uint64_t taken_ns = 0;            // CLOCK_MONOTONIC
  std::vector<VdiskObservation> vdisks;  // by (vm, vdisk) name
  std::vector<DeviceObservation> devices;
  std::uint64_t extents = 0;
  std::uint64_t records_ingested = 0;
  std::uint64_t records_lost = 0;
  std::uint64_t exports_connected = 0;
};

}  // namespace v2p::agent
