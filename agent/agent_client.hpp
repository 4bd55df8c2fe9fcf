// The CLI's side of the query protocol: one request, one answer, over the agent's socket.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>

namespace v2p::agent {

inline constexpr const char* kDefaultQuerySocket = "/run/v2p/agent.sock";

// Sends `request` (the "v" field is added) and returns the answer. Throws v2p::Error when the
// agent cannot be reached (naming the socket), times out, or answers with an error (its text).
nlohmann::json query_agent(const std::filesystem::path& socket, nlohmann::json request,
                           int timeout_ms = 30'000);

}  // namespace v2p::agent
