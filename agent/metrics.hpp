// The agent's /metrics page in the Prometheus text exposition format (version 0.0.4), rendered
// from one Observation. Names follow prometheus.io's conventions: the v2p_ prefix, base units
// in the name (_seconds, _bytes), _total for counters, histograms for latency; labels vm,
// vdisk, op, device only (bounded by the host's vdisks and devices). docs/observe.md lists them.
#pragma once

#include <string>

#include "agent/observation.hpp"

namespace v2p::agent {

inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

[[nodiscard]] std::string render_metrics(const Observation& o);

}  // namespace v2p::agent
