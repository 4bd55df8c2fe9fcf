#include <gtest/gtest.h>

#include "common/error.hpp"
#include "ec/config.hpp"

namespace v2p::ec {
namespace {

TEST(EcConfig, LayoutsPerVmAndVdisk) {
  const auto c = parse_config(R"({
    "metadata": "/m", "stores": [{"id": 1, "path": "/a"}, {"id": 2, "path": "/b"}],
    "layout": "4+2",
    "vms": {"7": {"layout": {"k": 8, "m": 3}, "vdisks": {"2": "10+4"}}},
    "container_bytes": 2097152, "allow_shared_domains": true, "hedge_ms": 5
  })");
  EXPECT_EQ(c.layout_for({VmId{1}, VdiskId{0}}), (Layout{4, 2}));
  EXPECT_EQ(c.layout_for({VmId{7}, VdiskId{0}}), (Layout{8, 3}));
  EXPECT_EQ(c.layout_for({VmId{7}, VdiskId{2}}), (Layout{10, 4}));
  EXPECT_EQ(c.container_bytes, 2U << 20);
  EXPECT_TRUE(c.allow_shared_domains);
  EXPECT_EQ(c.hedge_delay.count(), 5);
}

TEST(EcConfig, BadValuesAreRefusedWithAReason) {
  const std::string stores = R"("metadata": "/m", "stores": [{"id": 1, "path": "/a"}])";
  EXPECT_THROW(parse_config("{" + stores + R"(, "layout": "4+0"})"), Error);
  EXPECT_THROW(parse_config("{" + stores + R"(, "layout": "four"})"), Error);
  EXPECT_THROW(parse_config("{" + stores + R"(, "container_bytes": 100})"), Error);
  EXPECT_THROW(parse_config("{" + stores + R"(, "vms": {"x": {"layout": "4+2"}}})"), Error);
  EXPECT_THROW(
      parse_config(
          R"({"metadata": "/m", "stores": [{"id": 1, "path": "/a"}, {"id": 1, "path": "/b"}]})"),
      Error);
  EXPECT_THROW(parse_config("{"), Error);
  EXPECT_EQ(parse_layout("10+4"), (Layout{10, 4}));
  EXPECT_THROW(parse_layout("10+4x"), Error);
}

}  // namespace
}  // namespace v2p::ec
