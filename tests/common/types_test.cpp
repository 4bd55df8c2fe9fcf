#include <gtest/gtest.h>

#include <type_traits>

#include "v2p/tag.hpp"
#include "v2p/types.hpp"

namespace v2p {
namespace {

TEST(Types, AddressSpacesDoNotConvert) {
  static_assert(!std::is_convertible_v<VirtualOffset, PhysicalSector>);
  static_assert(!std::is_convertible_v<std::uint64_t, VirtualOffset>);
  EXPECT_LT(VirtualOffset{1}, VirtualOffset{2});
}

TEST(Types, DeviceIdUsesKernelEncoding) {
  const auto loop3 = DeviceId::from_major_minor(7, 3);
  EXPECT_EQ(loop3.kernel(), (7u << 20) | 3u);
  EXPECT_EQ(loop3.major(), 7u);
  EXPECT_EQ(loop3.minor(), 3u);
  EXPECT_EQ(DeviceId::from_kernel(loop3.kernel()), loop3);
}

TEST(Tag, SlotSurvivesIoprioRoundTrip) {
  for (std::uint16_t slot = 1; slot <= tag::kMaxSlot; ++slot) {
    const auto ioprio = tag::ioprio_for_slot(slot);
    EXPECT_EQ(ioprio >> tag::kClassShift, tag::kClassBestEffort) << "class NONE loses the hint";
    EXPECT_EQ(ioprio & tag::kLevelMask, 4);
    ASSERT_EQ(tag::slot_from_ioprio(ioprio), slot);
  }
  // A real class/level around the hint does not disturb it.
  EXPECT_EQ(tag::slot_from_ioprio(tag::ioprio_for_slot(77, (1 << 13) | 2)), 77);
  EXPECT_EQ(tag::ioprio_for_slot(77, (1 << 13) | 2) & 0xe007, (1 << 13) | 2) << "base kept";
}

}  // namespace
}  // namespace v2p
