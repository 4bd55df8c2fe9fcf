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

// An older use's completion can come after a newer one's (another CPU's batch); an entry long
// older than a use that completed lost its completion (ring full).
TEST(CompletionJoin, OlderUsesWaitUnlessLongStale) {
  CompletionJoin join;
  const std::uint64_t bio = 0xffff888000004000;
  const std::uint64_t stale = CompletionJoin::kStaleAfterNs;
  join.queued(bio, queue_event(1000, 100));
  join.queued(bio, queue_event(2000, 200));
  join.queued(bio, queue_event(2000 + stale + 1, 300));
  join.queued(bio, queue_event(3000 + stale + 1, 400));
  PhysEvent out;
  ASSERT_TRUE(join.completed(bio, 2500, 0, out));
  EXPECT_EQ(out.sector, 200U);
  ASSERT_TRUE(join.completed(bio, 1500, 0, out));  // later, still joined to its own use
  EXPECT_EQ(out.sector, 100U);
  EXPECT_EQ(join.evicted(), 0U);
  // The use queued at 2000 + stale + 1 never completes. The next use was queued only 1000 ns
  // after it, so when that one completes the leftover is not stale yet: it stays.
  ASSERT_TRUE(join.completed(bio, 3500 + stale + 1, 0, out));
  EXPECT_EQ(out.sector, 400U);
  EXPECT_EQ(join.evicted(), 0U);
  EXPECT_EQ(join.size(), 1U);
  // A use far later completes: the leftover entry is long stale now.
  join.queued(bio, queue_event(3 * stale, 500));
  ASSERT_TRUE(join.completed(bio, 3 * stale + 10, 0, out));
  EXPECT_EQ(out.sector, 500U);
  EXPECT_EQ(join.evicted(), 1U);
  EXPECT_EQ(join.size(), 0U);
}

// The bound is only reached by entries whose completions were lost: long-stale ones go first;
// when none is, the new entry is not kept. Both are counted.
TEST(CompletionJoin, AtTheBoundStaleEntriesGoThenNewOnesAreRefused) {
  CompletionJoin join(4);
  for (std::uint64_t k = 0; k < 5; ++k) {
    join.queued(0xffff888000005000 + k * 256, queue_event(1000 * (k + 1), k));
  }
  EXPECT_EQ(join.size(), 4U);
  EXPECT_EQ(join.evicted(), 1U);
  PhysEvent out;
  EXPECT_FALSE(join.completed(0xffff888000005000 + 4 * 256, 5500, 0, out));  // not kept
  ASSERT_TRUE(join.completed(0xffff888000005000, 1500, 0, out));
  EXPECT_EQ(out.sector, 0U);
  // Much later: the three left are long stale and make room.
  join.queued(0xffff888000006000, queue_event(3 * CompletionJoin::kStaleAfterNs, 7));
  join.queued(0xffff888000007000, queue_event(3 * CompletionJoin::kStaleAfterNs + 1, 8));
  EXPECT_EQ(join.evicted(), 4U);
  EXPECT_EQ(join.size(), 2U);
  ASSERT_TRUE(join.completed(0xffff888000007000, 3 * CompletionJoin::kStaleAfterNs + 9, 0, out));
  EXPECT_EQ(out.sector, 8U);
  ASSERT_TRUE(join.completed(0xffff888000006000, 3 * CompletionJoin::kStaleAfterNs + 9, 0, out));
  EXPECT_EQ(out.sector, 7U);
  EXPECT_EQ(join.size(), 0U);
}

// Addresses that collide in the index: deleting one must not hide the others.
TEST(CompletionJoin, CollidingAddressesStayFindable) {
  CompletionJoin join;
  constexpr std::uint64_t kBios = 3000;
  for (std::uint64_t i = 0; i < kBios; ++i) join.queued(0x1000 + i * 8, queue_event(10 + i, i));
  PhysEvent out;
  for (std::uint64_t i = 0; i < kBios; i += 2) {  // every second one first
    ASSERT_TRUE(join.completed(0x1000 + i * 8, 1'000'000, 0, out)) << i;
    EXPECT_EQ(out.sector, i);
  }
  for (std::uint64_t i = 1; i < kBios; i += 2) {
    ASSERT_TRUE(join.completed(0x1000 + i * 8, 1'000'000, 0, out)) << i;
    EXPECT_EQ(out.sector, i);
  }
  EXPECT_EQ(join.size(), 0U);
  EXPECT_EQ(join.evicted(), 0U);
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
