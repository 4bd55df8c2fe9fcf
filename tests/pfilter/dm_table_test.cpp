#include "pfilter/dm_table.hpp"

#include <gtest/gtest.h>

#include "common/error.hpp"

namespace v2p::pfilter {
namespace {

// Recorded with `dmsetup table` on a Debian guest: an LVM volume spread over two PVs, and a
// two-way striped volume with 64 KiB (128-sector) chunks.
constexpr const char* kLinear =
    "0 409600 linear 8:16 2048\n"
    "409600 204800 linear 8:32 2048\n";
constexpr const char* kStriped = "0 1048576 striped 2 128 8:16 2048 8:32 4096\n";

TEST(DmTable, ParsesLinear) {
  const auto t = parse_dm_table(kLinear);
  ASSERT_EQ(t.targets.size(), 2U);
  EXPECT_EQ(t.targets[1].start, 409600U);
  EXPECT_EQ(t.targets[1].length, 204800U);
  EXPECT_EQ(t.targets[1].type, "linear");
  ASSERT_EQ(t.targets[1].stripes.size(), 1U);
  EXPECT_EQ(t.targets[1].stripes[0].id, DeviceId::from_major_minor(8, 32));
  EXPECT_EQ(t.targets[1].stripes[0].offset, 2048U);
  EXPECT_EQ(t.to_text(), kLinear);
}

TEST(DmTable, MapsLinear) {
  const auto t = parse_dm_table(kLinear);
  EXPECT_EQ(t.map(0), (DeviceRange{DeviceId::from_major_minor(8, 16), 2048, 409600}));
  EXPECT_EQ(t.map(409599), (DeviceRange{DeviceId::from_major_minor(8, 16), 2048 + 409599, 1}));
  EXPECT_EQ(t.map(409600 + 10), (DeviceRange{DeviceId::from_major_minor(8, 32), 2058, 204790}));
  EXPECT_FALSE(t.map(409600 + 204800).has_value());
}

TEST(DmTable, MapsStriped) {
  const auto t = parse_dm_table(kStriped);
  ASSERT_EQ(t.targets[0].stripes.size(), 2U);
  EXPECT_EQ(t.targets[0].chunk_sectors, 128U);
  const auto sdb = DeviceId::from_major_minor(8, 16);
  const auto sdc = DeviceId::from_major_minor(8, 32);
  EXPECT_EQ(t.map(0), (DeviceRange{sdb, 2048, 128}));
  EXPECT_EQ(t.map(130), (DeviceRange{sdc, 4096 + 2, 126}));  // chunk 1 → stripe 1, chunk 0
  EXPECT_EQ(t.map(256 + 5), (DeviceRange{sdb, 2048 + 128 + 5, 123}));  // chunk 2 → stripe 0, 1
  EXPECT_EQ(t.map(3 * 128), (DeviceRange{sdc, 4096 + 128, 128}));
}

TEST(DmTable, AcceptsNamePrefixAndKeepsOtherTargets) {
  const auto t = parse_dm_table(
      "vg-cache: 0 2048 cache 253:1 253:2 253:0 128 1 writeback smq 0\n"
      "vg-cache: 2048 100 error\n");
  ASSERT_EQ(t.targets.size(), 2U);
  EXPECT_EQ(t.targets[0].type, "cache");
  EXPECT_EQ(t.targets[0].params, "253:1 253:2 253:0 128 1 writeback smq 0");
  EXPECT_TRUE(t.targets[0].stripes.empty());
  EXPECT_FALSE(t.map(10).has_value());  // not a target the model translates
}

TEST(DmTable, RejectsMalformedLines) {
  EXPECT_THROW(parse_dm_table("0 x linear 8:0 0\n"), Error);
  EXPECT_THROW(parse_dm_table("0 100 linear\n"), Error);
  EXPECT_THROW(parse_dm_table("0 100 striped 2 128 8:16 0\n"), Error);
  EXPECT_THROW(parse_dm_table("0 100 striped 0 128\n"), Error);
  EXPECT_TRUE(parse_dm_table("\n  \n").targets.empty());
}

TEST(DmTable, ReadsNothingWithoutDeviceMapper) {
  // This kernel has no device-mapper; on one that has, dm-0 may or may not exist.
  if (!std::filesystem::exists("/dev/mapper/control")) {
    EXPECT_FALSE(read_dm_table(DeviceId::from_major_minor(253, 0)).has_value());
  }
}

}  // namespace
}  // namespace v2p::pfilter
