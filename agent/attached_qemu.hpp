// A QEMU process the agent attached to by itself, and the devices it made the probe watch.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "agent/agent.hpp"
#include "cli/attach_session.hpp"

namespace v2p::agent {

struct Agent::Attached {
  std::string vm;
  std::unique_ptr<cli::AttachSession> session;
  std::vector<DeviceId> devices;
};

}  // namespace v2p::agent
