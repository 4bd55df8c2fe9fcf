// `v2p demo`'s own agent: the chain's export streams to it, so the demo shows the views an
// operator gets from `v2p agent` (the top view while it runs, the web page with --keep). Runs
// in-process on a thread of its own and is asked through its query socket, like any client.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "agent/agent.hpp"
#include "agent/observation.hpp"

namespace v2p::cli {

class DemoAgent {
 public:
  // Sockets in `dir`; the web page on 127.0.0.1:9391, or any free port when that is taken.
  explicit DemoAgent(const std::filesystem::path& dir);
  ~DemoAgent();
  DemoAgent(const DemoAgent&) = delete;
  DemoAgent& operator=(const DemoAgent&) = delete;

  [[nodiscard]] const std::filesystem::path& ingest_socket() const noexcept { return ingest_; }
  [[nodiscard]] const std::filesystem::path& query_socket() const noexcept { return query_; }
  [[nodiscard]] std::string web_address() const { return web_; }
  // Waits until the agent's probe watches the chain's image (announced when the export
  // connects), so the agent sees the workload's first bio; false after `timeout`.
  bool wait_for_probe(std::chrono::milliseconds timeout) const;
  // The vdisk rows of `v2p top` since the previous call (empty when the agent did not answer).
  std::vector<std::string> top_lines();

 private:
  std::filesystem::path ingest_, query_;
  std::string web_;
  std::atomic<bool> probed_{false};  // before agent_: its log writes it until it is gone
  std::unique_ptr<agent::Agent> agent_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  agent::Observation prev_;
};

}  // namespace v2p::cli
