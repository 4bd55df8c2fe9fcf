// The query subcommands' agent mode: `v2p map|whose|verify` ask the running `v2p agent` when
// neither --stream nor --snapshot is given (docs/agent.md). Each returns the exit code.
#pragma once

#include <cstdint>
#include <string>

namespace v2p::cli {

struct AgentQuery {
  std::string socket;  // the agent's query socket
  bool json = false;
};

int agent_map(const AgentQuery& q, const std::string& vm, const std::string& vdisk,
              std::uint64_t offset, std::uint64_t length);
// Exit 1 when no vdisk owns the sector.
int agent_whose(const AgentQuery& q, const std::string& device, std::uint64_t sector);
// Exit 1 below 100% accuracy unless allow_mismatch.
int agent_verify(const AgentQuery& q, const std::string& vm, const std::string& vdisk,
                 bool allow_mismatch);

}  // namespace v2p::cli
