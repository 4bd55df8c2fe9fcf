#include "pfilter/completion_join.hpp"

#include <gtest/gtest.h>

#include <cerrno>

namespace v2p::pfilter {
namespace {

PhysEvent queue_event(std::uint64_t ts_ns, std::uint64_t sector) {
  PhysEvent e;
  e.ts_ns = ts_ns;
  e.sector = sector;
  e.bytes = 4096;
  e.tgid = 42;
  e.kind = static_cast<std::uint8_t>(PhysEventKind::kQueue);
  return e;
}

TEST(CompletionJoin, JoinsACompletionWithItsQueueEvent) {
  CompletionJoin join;
  join.queued(0xffff888000001000, queue_event(1000, 8));
  PhysEvent out;
  ASSERT_TRUE(join.completed(0xffff888000001000, 1600, -EIO, out));
  EXPECT_EQ(out.kind, static_cast<std::uint8_t>(PhysEventKind::kComplete));
  EXPECT_EQ(out.ts_ns, 1600U);
  EXPECT_EQ(out.latency_ns, 600U);
  EXPECT_EQ(out.sector, 8U);
  EXPECT_EQ(out.tgid, 42U);
  EXPECT_EQ(out.error, -EIO);
  // Reported once only.
  EXPECT_FALSE(join.completed(0xffff888000001000, 1700, 0, out));
  EXPECT_EQ(join.evicted(), 0U);
}

TEST(CompletionJoin, IgnoresCompletionsWithoutAnEarlierQueueEvent) {
  CompletionJoin join;
  PhysEvent out;
  EXPECT_FALSE(join.completed(0xffff888000002000, 500, 0, out));  // queued before attach
  join.queued(0xffff888000002000, queue_event(1000, 16));
  EXPECT_FALSE(join.completed(0xffff888000002000, 900, 0, out));  // an earlier use's completion
  EXPECT_TRUE(join.completed(0xffff888000002000, 1100, 0, out));
}

// The kernel frees a bio when it completes and may hand the same memory to the next bio before
// the first completion reaches user space; queue events of different CPUs' batches arrive in
// either order. The probe joins completions in time order.
TEST(CompletionJoin, ReusedAddressesJoinByTime) {
  CompletionJoin join;
  const std::uint64_t bio = 0xffff888000003000;
  // Twenty uses of one address, their queue events arriving two by two swapped.
  for (std::uint64_t k = 0; k < 20; k += 2) {
    join.queued(bio, queue_event(10 + (k + 1) * 10, 1000 + k + 1));
    join.queued(bio, queue_event(10 + k * 10, 1000 + k));
  }
  EXPECT_EQ(join.size(), 20U);
  for (std::uint64_t k = 0; k < 20; ++k) {
    PhysEvent out;
    ASSERT_TRUE(join.completed(bio, 15 + k * 10, 0, out)) << k;
    EXPECT_EQ(out.sector, 1000 + k);
    EXPECT_EQ(out.latency_ns, 5U);
  }
  EXPECT_EQ(join.size(), 0U);
  EXPECT_EQ(join.evicted(), 0U);
}

// Uses never overlap: when a later use completes, an older one still waiting lost its completion
// (ring full), which the probe would have joined first.
TEST(CompletionJoin, AnOlderUseIsDroppedWhenALaterOneCompletes) {
  CompletionJoin join;
  const std::uint64_t bio = 0xffff888000004000;
  join.queued(bio, queue_event(1000, 100));
  join.queued(bio, queue_event(2000, 200));
  join.queued(bio, queue_event(3000, 300));
  PhysEvent out;
  ASSERT_TRUE(join.completed(bio, 2500, 0, out));
  EXPECT_EQ(out.sector, 200U);
  EXPECT_EQ(join.evicted(), 1U);
  EXPECT_FALSE(join.completed(bio, 1500, 0, out));  // its entry was dropped
  ASSERT_TRUE(join.completed(bio, 3500, 0, out));
  EXPECT_EQ(out.sector, 300U);
  EXPECT_EQ(join.size(), 0U);
}

TEST(CompletionJoin, AtTheBoundTheOldestEntryGivesWay) {
  CompletionJoin join(4);
  for (std::uint64_t k = 0; k < 5; ++k) {
    join.queued(0xffff888000005000 + k * 256, queue_event(1000 * (k + 1), k));
  }
  EXPECT_EQ(join.size(), 4U);
  EXPECT_EQ(join.evicted(), 1U);
  PhysEvent out;
  EXPECT_FALSE(join.completed(0xffff888000005000, 1500, 0, out));  // the oldest is gone
  for (std::uint64_t k = 1; k < 5; ++k) {
    ASSERT_TRUE(join.completed(0xffff888000005000 + k * 256, 1000 * (k + 1) + 1, 0, out)) << k;
    EXPECT_EQ(out.sector, k);
  }
}

TEST(CompletionJoin, ManyBiosInFlight) {
  CompletionJoin join;
  constexpr std::uint64_t kBios = 30000;
  for (int round = 0; round < 2; ++round) {  // the second round reuses the pool's entries
    for (std::uint64_t i = 0; i < kBios; ++i) {
      join.queued(0xffff888100000000 + i * 256, queue_event(10 + i, i));
    }
    EXPECT_EQ(join.size(), kBios);
    std::uint64_t joined = 0;
    for (std::uint64_t i = 0; i < kBios; ++i) {
      PhysEvent out;
      if (join.completed(0xffff888100000000 + i * 256, 1'000'000, 0, out) && out.sector == i) {
        ++joined;
      }
    }
    EXPECT_EQ(joined, kBios);
    EXPECT_EQ(join.size(), 0U);
  }
  EXPECT_EQ(join.evicted(), 0U);
}

}  // namespace
}  // namespace v2p::pfilter
