#include "vfilter/peer_identity.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

namespace v2p::vfilter {
namespace {

TEST(PeerIdentity, LibvirtStyleName) {
  EXPECT_EQ(vm_name_from_cmdline(
                {"qemu-system-x86_64", "-name", "guest=web1,debug-threads=on", "-uuid", "1234"}),
            "web1");
}

TEST(PeerIdentity, PlainNameAndProcessSuffix) {
  EXPECT_EQ(vm_name_from_cmdline({"qemu", "-name", "db"}), "db");
  EXPECT_EQ(vm_name_from_cmdline({"qemu", "-name", "db,process=qemu-db"}), "db");
  EXPECT_EQ(vm_name_from_cmdline({"qemu", "-name", "a,,b,debug-threads=on"}), "a,b");
}

TEST(PeerIdentity, UuidWhenNoName) {
  EXPECT_EQ(vm_name_from_cmdline({"qemu", "-m", "256", "-uuid", "5f0c-11"}), "5f0c-11");
  EXPECT_EQ(vm_name_from_cmdline({"qemu", "-name", "debug-threads=on", "-uuid", "u"}), "u");
}

TEST(PeerIdentity, NothingToGoOn) {
  EXPECT_EQ(vm_name_from_cmdline({"qemu", "-m", "256"}), "");
  EXPECT_EQ(vm_name_from_cmdline({"qemu", "-name"}), "");  // option without value
  EXPECT_EQ(vm_name_from_cmdline({}), "");
}

TEST(PeerIdentity, ReadsOwnCmdline) {
  const auto argv = read_cmdline(::getpid());
  ASSERT_FALSE(argv.empty());
  EXPECT_NE(argv[0].find("vfilter_unit_test"), std::string::npos);
  EXPECT_TRUE(read_cmdline(-5).empty());
}

}  // namespace
}  // namespace v2p::vfilter
