// Work other threads hand to the agent's thread (the HTTP server's requests): the agent's state
// stays single-threaded and lock-free; a job runs between rounds like a query, and its caller
// waits for the answer with a timeout.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace v2p::agent {

struct HttpAnswer {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class AgentJobs {
 public:
  AgentJobs();  // throws v2p::Error when no eventfd can be made
  ~AgentJobs();
  AgentJobs(const AgentJobs&) = delete;
  AgentJobs& operator=(const AgentJobs&) = delete;

  // Readable when a job waits: the agent polls it with its sockets.
  [[nodiscard]] int fd() const noexcept { return fd_; }
  // Any thread: runs `job` on the agent's thread; nullopt when it did not run within `timeout`
  // (the agent is busy or stopping; the job is then skipped).
  std::optional<HttpAnswer> call(std::function<HttpAnswer()> job,
                                 std::chrono::milliseconds timeout);
  // The agent's thread: runs at most `budget` waiting jobs.
  void run_pending(std::size_t budget);
  // No job runs any more: waiting and later calls return nullopt at once (the agent stops).
  void close();

  struct Job;

 private:
  int fd_ = -1;
  std::mutex mu_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool closed_ = false;  // under mu_
};

}  // namespace v2p::agent
