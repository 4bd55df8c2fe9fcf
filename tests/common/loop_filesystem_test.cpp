#include "common/loop_filesystem.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "common/subprocess.hpp"
#include "common/test_skip.hpp"

namespace v2p {
namespace {

bool loop_attached(const std::string& dev) {
  return run_command({"losetup", dev}).ok();
}

class LoopFilesystemTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LoopFilesystemTest, MakesAndRemovesEverything) {
  V2P_REQUIRE_ROOT("loop devices, mount");
  const std::string mkfs = "mkfs." + GetParam();
  V2P_REQUIRE_TOOLS(mkfs);
  const auto dir =
      std::filesystem::path("/var/tmp") / ("v2p-loopfs-test." + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string dev;
  {
    LoopFilesystem fs({dir / "backing.img", dir / "mnt", 320ULL << 20, GetParam(), true});
    dev = fs.loop_device();
    EXPECT_TRUE(loop_attached(dev));
    EXPECT_EQ(fs.device().major(), 7u) << "loop devices have major 7";
    std::ofstream(fs.mountpoint() / "hello") << "hello";
    EXPECT_TRUE(std::filesystem::exists(fs.mountpoint() / "hello"));
  }
  EXPECT_FALSE(loop_attached(dev));
  EXPECT_FALSE(std::filesystem::exists(dir / "backing.img"));
  EXPECT_FALSE(std::filesystem::exists(dir / "mnt"));
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(FileSystems, LoopFilesystemTest,
                         ::testing::Values("ext4", "xfs", "btrfs"));

TEST(LoopFilesystem, FailedSetUpUndoesItself) {
  V2P_REQUIRE_ROOT("loop devices");
  const auto dir =
      std::filesystem::path("/var/tmp") / ("v2p-loopfs-fail." + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  EXPECT_THROW(LoopFilesystem({dir / "backing.img", dir / "mnt", 64ULL << 20, "nofs", true}),
               Error);
  EXPECT_FALSE(std::filesystem::exists(dir / "backing.img"));
  const auto listing = run_command({"losetup", "-a"});
  EXPECT_EQ(listing.out.find(dir.string()), std::string::npos) << listing.out;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace v2p
