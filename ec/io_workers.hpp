// A fixed set of threads for chunk I/O, so the k + m reads or writes of a container run at once
// on their different devices. A reader may stop waiting before stragglers finish (hedging):
// tasks own what they touch through shared state, never references into the caller's frame.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace v2p::ec {

class IoWorkers {
 public:
  explicit IoWorkers(int threads);
  // Runs what is queued, then joins.
  ~IoWorkers();
  IoWorkers(const IoWorkers&) = delete;
  IoWorkers& operator=(const IoWorkers&) = delete;

  void submit(std::function<void()> task);
  // Runs every task on the workers and returns when all have finished.
  void run_all(std::vector<std::function<void()>> tasks);

 private:
  void loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace v2p::ec
