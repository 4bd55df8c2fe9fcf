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
// the first completion, waiting in a per-CPU batch, reaches user space.
TEST(CompletionJoin, ReusedAddressesJoinByTime) {
  CompletionJoin join;
  const std::uint64_t bio = 0xffff888000003000;
  // Twenty uses of one address wait for their completions, as with a CPU's batch of 16.
  for (std::uint64_t k = 0; k < 20; ++k) join.queued(bio, queue_event(10 + k * 10, 1000 + k));
  PhysEvent first;
  for (std::uint64_t k = 20; k-- > 0;) {
    ASSERT_TRUE(join.completed(bio, 15 + k * 10, 0, first)) << k;
    EXPECT_EQ(first.sector, 1000 + k);
  }
  join.queued(bio, queue_event(1000, 100));  // first use, completes at 1500
  join.queued(bio, queue_event(2000, 200));  // second use, completes at 2500
  join.queued(bio, queue_event(3000, 300));  // third use, completes at 3500
  PhysEvent out;
  // Completions may come in any order (different CPUs' batches).
  ASSERT_TRUE(join.completed(bio, 2500, 0, out));
  EXPECT_EQ(out.sector, 200U);
  EXPECT_EQ(out.latency_ns, 500U);
  ASSERT_TRUE(join.completed(bio, 1500, 0, out));
  EXPECT_EQ(out.sector, 100U);
  ASSERT_TRUE(join.completed(bio, 3500, 0, out));
  EXPECT_EQ(out.sector, 300U);
  EXPECT_FALSE(join.completed(bio, 3600, 0, out));
  EXPECT_EQ(join.evicted(), 0U);
}

TEST(CompletionJoin, AFullWindowGivesUpItsOldestEntry) {
  CompletionJoin join;
  const std::uint64_t bio = 0xffff888000004000;
  // The same address once more than its window holds, without completions.
  for (std::uint64_t k = 0; k < CompletionJoin::kWindow + 1; ++k) {
    join.queued(bio, queue_event(1000 * (k + 1), k));
  }
  EXPECT_EQ(join.evicted(), 1U);
  PhysEvent out;
  EXPECT_FALSE(join.completed(bio, 1500, 0, out));  // the first use's entry is gone
  ASSERT_TRUE(join.completed(bio, 2500, 0, out));
  EXPECT_EQ(out.sector, 1U);
}

TEST(CompletionJoin, OneAddressFloodingItsWindowDoesNotGrowTheTable) {
  CompletionJoin join;
  for (std::uint64_t k = 0; k < 1000; ++k) join.queued(0xffff888000005000, queue_event(k + 1, k));
  EXPECT_EQ(join.capacity(), std::size_t{1} << CompletionJoin::kMinSlotBits);
  EXPECT_EQ(join.evicted(), 1000 - CompletionJoin::kWindow);
}

TEST(CompletionJoin, ManyBiosInFlight) {
  CompletionJoin join;
  constexpr std::uint64_t kBios = 30000;  // seven times what the table starts with
  for (std::uint64_t i = 0; i < kBios; ++i) {
    join.queued(0xffff888100000000 + i * 256, queue_event(10 + i, i));
  }
  std::uint64_t joined = 0;
  for (std::uint64_t i = 0; i < kBios; ++i) {
    PhysEvent out;
    if (join.completed(0xffff888100000000 + i * 256, 1'000'000, 0, out) && out.sector == i) {
      ++joined;
    }
  }
  EXPECT_EQ(joined + join.evicted(), kBios);
  EXPECT_EQ(joined, kBios);
  // It started at 4 096 entries and grew to hold them all.
  EXPECT_GT(join.capacity(), kBios);
  EXPECT_LE(join.capacity(), std::size_t{1} << CompletionJoin::kMaxSlotBits);
}

}  // namespace
}  // namespace v2p::pfilter
