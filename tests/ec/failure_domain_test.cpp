// Failure-domain resolution, on the real /sys of this machine and on fixture sysfs trees.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/loop_filesystem.hpp"
#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "ec/failure_domain.hpp"

namespace v2p::ec {
namespace {

namespace fs = std::filesystem;

class EcSysfs : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("v2p-ec-sysfs." + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_ / "dev/block");
  }
  void TearDown() override { fs::remove_all(root_); }
  // A block device directory at devices/<rel> with a dev file, linked from dev/block/MAJ:MIN.
  fs::path device(const std::string& rel, unsigned ma, unsigned mi) {
    const auto dir = root_ / "devices" / rel;
    fs::create_directories(dir);
    std::ofstream(dir / "dev") << ma << ":" << mi << "\n";
    fs::create_directory_symlink(
        fs::relative(dir, root_ / "dev/block"),
        root_ / "dev/block" / (std::to_string(ma) + ":" + std::to_string(mi)));
    return dir;
  }
  fs::path root_;
};

TEST_F(EcSysfs, PartitionResolvesToItsDisk) {
  device("pci0/block/sdb", 8, 16);
  const auto part = device("pci0/block/sdb/sdb2", 8, 18);
  std::ofstream(part / "partition") << "2\n";
  const auto d = failure_domain_of_device(::makedev(8, 18), root_);
  EXPECT_EQ(d.name, "sdb");
  EXPECT_EQ(d.major, 8U);
  EXPECT_EQ(d.minor, 16U);
}

TEST_F(EcSysfs, LoopResolvesToTheDeviceOfItsBackingFile) {
  const auto loop = device("virtual/block/loop3", 7, 3);
  fs::create_directories(loop / "loop");
  const auto backing = root_ / "backing.img";
  std::ofstream(backing) << "x";
  std::ofstream(loop / "loop/backing_file") << backing.string() << "\n";
  // The backing file lives on this machine's real disk; resolve that part against real /sys.
  const auto expected = failure_domain_of(backing);
  const auto d = failure_domain_of_device(::makedev(7, 3), root_, "/proc/self/mountinfo");
  // The fixture tree does not hold the real disk, so compare device numbers only.
  EXPECT_EQ(d.major, expected.major);
  EXPECT_EQ(d.minor, expected.minor);
}

TEST_F(EcSysfs, SingleSlaveDeviceMapperResolvesToTheSlave) {
  device("pci0/block/nvme0n1", 259, 0);
  const auto dm = device("virtual/block/dm-0", 253, 0);
  fs::create_directories(dm / "slaves");
  fs::create_directory_symlink(root_ / "devices/pci0/block/nvme0n1", dm / "slaves/nvme0n1");
  EXPECT_EQ(failure_domain_of_device(::makedev(253, 0), root_).name, "nvme0n1");
}

TEST(EcFailureDomain, TempDirectoryIsOnAWholeDisk) {
  const auto d = failure_domain_of(fs::temp_directory_path());
  if (d.major == 0) V2P_SKIP_MACHINE("temp directory is on " + d.name + ", not a block device");
  const auto sys =
      fs::path("/sys/dev/block") / (std::to_string(d.major) + ":" + std::to_string(d.minor));
  ASSERT_TRUE(fs::exists(sys)) << d.label();
  EXPECT_FALSE(fs::exists(sys / "partition")) << d.label() << " is a partition";
  EXPECT_FALSE(fs::exists(sys / "loop/backing_file")) << d.label() << " is a loop device";
}

TEST(EcFailureDomain, TmpfsIsItsOwnDomain) {
  if (!fs::is_directory("/dev/shm")) V2P_SKIP_MACHINE("no /dev/shm");
  struct stat st {};
  ASSERT_EQ(::stat("/dev/shm", &st), 0);
  if (::major(st.st_dev) != 0) V2P_SKIP_MACHINE("/dev/shm is not an anonymous-device file system");
  const auto d = failure_domain_of("/dev/shm");
  EXPECT_EQ(d.major, 0U);
  EXPECT_EQ(d.minor, ::minor(st.st_dev));
  EXPECT_NE(d.name.find("tmpfs"), std::string::npos) << d.name;
}

// A real loop file system resolves to the disk its backing file is on, not to the loop device.
TEST(EcFailureDomain, LoopFilesystemResolvesToBackingDisk) {
  V2P_REQUIRE_ROOT("loop devices, mount");
  V2P_REQUIRE_TOOLS("mkfs.ext4");
  const auto dir = fs::path("/var/tmp") / ("v2p-ec-fd." + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    LoopFilesystem lfs({dir / "backing.img", dir / "mnt", 64ULL << 20, "ext4", false});
    const auto d = failure_domain_of(lfs.mountpoint());
    const auto backing = failure_domain_of(dir);
    EXPECT_EQ(d, backing) << d.label() << " vs " << backing.label();
    EXPECT_NE(d.major, lfs.device().major()) << "stopped at the loop device";
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace v2p::ec
