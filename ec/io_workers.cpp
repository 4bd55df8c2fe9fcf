#include "ec/io_workers.hpp"

#include <memory>

namespace v2p::ec {

IoWorkers::IoWorkers(int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { loop(); });
}

IoWorkers::~IoWorkers() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void IoWorkers::submit(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void IoWorkers::run_all(std::vector<std::function<void()>> tasks) {
  struct Pending {
    std::mutex mu;
    std::condition_variable cv;
    std::size_t left;
  };
  auto p = std::make_shared<Pending>();
  p->left = tasks.size();
  for (auto& t : tasks) {
    submit([p, t = std::move(t)] {
      t();
      std::lock_guard lock(p->mu);
      if (--p->left == 0) p->cv.notify_all();
    });
  }
  std::unique_lock lock(p->mu);
  p->cv.wait(lock, [&] { return p->left == 0; });
}

void IoWorkers::loop() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

}  // namespace v2p::ec
