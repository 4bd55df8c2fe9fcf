#include "agent/agent_jobs.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <condition_variable>

#include "common/error.hpp"

namespace v2p::agent {

struct AgentJobs::Job {
  std::function<HttpAnswer()> fn;
  std::mutex mu;
  std::condition_variable cv;
  std::optional<HttpAnswer> answer;
  bool abandoned = false;  // the caller gave up, or the queue closed
};

AgentJobs::AgentJobs() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (fd_ < 0) throw Error("eventfd for the agent's job queue failed");
}

AgentJobs::~AgentJobs() {
  ::close(fd_);
}

std::optional<HttpAnswer> AgentJobs::call(std::function<HttpAnswer()> job,
                                          std::chrono::milliseconds timeout) {
  auto j = std::make_shared<Job>();
  j->fn = std::move(job);
  {
    std::lock_guard lock(mu_);
    if (closed_) return std::nullopt;
    queue_.push_back(j);
  }
  const std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(fd_, &one, sizeof one);
  std::unique_lock lock(j->mu);
  if (!j->cv.wait_for(lock, timeout, [&] { return j->answer.has_value() || j->abandoned; }) ||
      !j->answer) {
    j->abandoned = true;
    return std::nullopt;
  }
  return std::move(j->answer);
}

void AgentJobs::close() {
  std::deque<std::shared_ptr<Job>> left;
  {
    std::lock_guard lock(mu_);
    closed_ = true;
    left.swap(queue_);
  }
  for (const auto& j : left) {
    {
      std::lock_guard lock(j->mu);
      j->abandoned = true;
    }
    j->cv.notify_one();
  }
}

void AgentJobs::run_pending(std::size_t budget) {
  std::uint64_t drained = 0;
  [[maybe_unused]] auto n = ::read(fd_, &drained, sizeof drained);
  for (; budget > 0; --budget) {
    std::shared_ptr<Job> j;
    {
      std::lock_guard lock(mu_);
      if (queue_.empty()) return;
      j = std::move(queue_.front());
      queue_.pop_front();
    }
    {
      std::lock_guard lock(j->mu);
      if (j->abandoned) continue;
    }
    HttpAnswer a;
    try {
      a = j->fn();
    } catch (const std::exception& e) {
      a = {500, "text/plain; charset=utf-8", std::string(e.what()) + "\n"};
    }
    {
      std::lock_guard lock(j->mu);
      j->answer = std::move(a);
    }
    j->cv.notify_one();
  }
  // Jobs left for the next round: keep the eventfd readable so its poll does not sleep.
  std::lock_guard lock(mu_);
  if (!queue_.empty()) {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto w = ::write(fd_, &one, sizeof one);
  }
}

}  // namespace v2p::agent
