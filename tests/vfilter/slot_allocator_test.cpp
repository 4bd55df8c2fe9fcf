#include "vfilter/slot_allocator.hpp"

#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "v2p/tag.hpp"

namespace v2p::vfilter {
namespace {

TEST(SlotAllocator, HandsOutEverySlotOnceThenZero) {
  SlotAllocator a(tag::kMaxSlot);
  std::set<std::uint16_t> seen;
  for (int i = 0; i < tag::kMaxSlot; ++i) {
    const auto s = a.try_acquire();
    ASSERT_GE(s, 1);
    ASSERT_LE(s, tag::kMaxSlot);
    ASSERT_TRUE(seen.insert(s).second) << "slot " << s << " handed out twice";
  }
  EXPECT_EQ(a.try_acquire(), 0);
  EXPECT_EQ(a.in_use(), tag::kMaxSlot);
  a.release(17);
  EXPECT_EQ(a.try_acquire(), 17);
}

TEST(SlotAllocator, DoubleReleaseIsIgnored) {
  SlotAllocator a(4);
  const auto s = a.acquire();
  a.release(s);
  a.release(s);
  a.release(0);
  a.release(999);
  EXPECT_EQ(a.in_use(), 0u);
  std::set<std::uint16_t> seen;
  for (int i = 0; i < 4; ++i) seen.insert(a.try_acquire());
  EXPECT_EQ(seen.size(), 4u);
  EXPECT_EQ(a.try_acquire(), 0);
}

TEST(SlotAllocator, AcquireWaitsForARelease) {
  SlotAllocator a(1);
  const auto s = a.acquire();
  std::uint16_t got = 0;
  std::thread waiter([&] { got = a.acquire(); });  // blocks: the only slot is taken
  a.release(s);
  waiter.join();
  EXPECT_EQ(got, s);
}

TEST(SlotAllocator, LeaseReleasesOnDestruction) {
  SlotAllocator a(2);
  {
    SlotLease l1(a);
    SlotLease l2(a);
    EXPECT_NE(l1.slot(), l2.slot());
    SlotLease moved(std::move(l1));
    EXPECT_EQ(l1.slot(), 0);
    EXPECT_EQ(a.in_use(), 2u);
  }
  EXPECT_EQ(a.in_use(), 0u);
}

TEST(SlotAllocator, ProcessWideInstanceCoversTheHintBits) {
  auto& a = SlotAllocator::instance();
  EXPECT_EQ(&a, &SlotAllocator::instance());
  SlotLease l(a);
  EXPECT_EQ(tag::slot_from_ioprio(tag::ioprio_for_slot(l.slot())), l.slot());
}

}  // namespace
}  // namespace v2p::vfilter
