// An Agent whose rounds run on a thread of their own, for tests that talk to it through its
// sockets as a client would; the destructor stops the thread, then the agent.
#pragma once

#include <atomic>
#include <memory>
#include <thread>

#include "agent/agent.hpp"

namespace v2p::agent::test_support {

class RunningAgent {
 public:
  explicit RunningAgent(AgentOptions o) : agent_(std::make_unique<Agent>(std::move(o))) {
    thread_ = std::thread([this] {
      while (!stop_) agent_->round(5);
    });
  }
  ~RunningAgent() {
    stop_ = true;
    thread_.join();
  }
  RunningAgent(const RunningAgent&) = delete;
  RunningAgent& operator=(const RunningAgent&) = delete;

 private:
  std::unique_ptr<Agent> agent_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace v2p::agent::test_support
