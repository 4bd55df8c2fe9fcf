// The CLI's side of the query protocol: one request, one answer, over the agent's socket.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/error.hpp"

namespace v2p::agent {

inline constexpr const char* kDefaultQuerySocket = "/run/v2p/agent.sock";

// No agent listens on the socket (absent, or not running): callers that must not depend on the
// agent (the libvirt hook) tell this apart from an agent that answered with an error.
class AgentUnreachable : public Error {
 public:
  using Error::Error;
};

// Sends `request` (the "v" field is added) and returns the answer. Throws AgentUnreachable when
// the agent cannot be reached (naming the socket), v2p::Error when it times out or answers with
// an error (its text).
nlohmann::json query_agent(const std::filesystem::path& socket, nlohmann::json request,
                           int timeout_ms = 30'000);

}  // namespace v2p::agent
