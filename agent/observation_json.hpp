// The observation in the `stats` answer (fields "vdisks" and "devices", docs/observe.md), and
// back: `v2p top` reads what the agent wrote with the same code.
#pragma once

#include <nlohmann/json.hpp>

#include "agent/observation.hpp"

namespace v2p::agent {

void add_observation(nlohmann::json& out, const Observation& o);
// Throws nlohmann::json::exception on a malformed answer.
[[nodiscard]] Observation observation_from_json(const nlohmann::json& in);

}  // namespace v2p::agent
