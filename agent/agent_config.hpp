// The agent's configuration file (JSON, default /etc/v2p/agent.json; docs/agent.md): every
// field optional, flags override it. Errors name the file, the field and what is wrong.
#pragma once

#include <filesystem>

#include "agent/agent.hpp"

namespace v2p::agent {

// Applies the file's fields over `options`. Throws v2p::Error "FILE: field 'X' …".
void load_agent_config(const std::filesystem::path& file, AgentOptions& options);

}  // namespace v2p::agent
