// The never-blocking queue between the vfilter's completion threads and the policy thread.
#include "policy/host/bounded_queue.hpp"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace v2p::policy {
namespace {

TEST(BoundedQueue, RefusesWhenFullAndKeepsFifoOrder) {
  BoundedQueue<int> q(4);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(q.try_push(i));
  EXPECT_FALSE(q.try_push(99));  // full: refused at once, nothing overwritten
  for (int i = 0; i < 4; ++i) EXPECT_EQ(q.try_pop(), i);
  EXPECT_EQ(q.try_pop(), std::nullopt);
  EXPECT_TRUE(q.try_push(5));  // wraps around
  EXPECT_EQ(q.try_pop(), 5);
  EXPECT_THROW(BoundedQueue<int>(6), std::invalid_argument);
}

// Producers race a consumer: every accepted item arrives exactly once, each producer's items in
// the order it pushed them, and accepted + refused = offered.
TEST(BoundedQueue, ManyProducersOneConsumerLoseNothingAccepted) {
  constexpr int kProducers = 4;
  constexpr int kEach = 200000;
  BoundedQueue<std::pair<int, int>> q(1024);
  std::atomic<int> refused{0};
  std::atomic<int> done{0};
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kEach; ++i) {
        if (!q.try_push({p, i})) refused.fetch_add(1);
      }
      done.fetch_add(1);
    });
  }
  std::vector<int> last(kProducers, -1);
  long received = 0;
  bool ordered = true;
  for (;;) {
    const bool finished = done.load() == kProducers;
    if (auto v = q.try_pop()) {
      ordered = ordered && v->second > last[v->first];
      last[v->first] = v->second;
      ++received;
    } else if (finished) {
      break;
    }
  }
  for (auto& t : producers) t.join();
  EXPECT_TRUE(ordered);
  EXPECT_EQ(received + refused.load(), long{kProducers} * kEach);
  EXPECT_GT(received, 0);
}

}  // namespace
}  // namespace v2p::policy
