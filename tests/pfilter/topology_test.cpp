#include "pfilter/topology.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "common/error.hpp"
#include "common/test_skip.hpp"

namespace v2p::pfilter {
namespace {

namespace fs = std::filesystem;

// A miniature /sys: dev/block/MAJ:MIN links into devices/, as the kernel lays it out.
class FakeSysfs {
 public:
  FakeSysfs() : root_(fs::temp_directory_path() / ("v2p-sysfs-" + std::to_string(::getpid()))) {
    fs::create_directories(root_ / "dev/block");
  }
  ~FakeSysfs() { fs::remove_all(root_); }
  fs::path add(const std::string& rel, const std::string& majmin) {
    const auto dir = root_ / "devices" / rel;
    fs::create_directories(dir);
    write(dir / "dev", majmin);
    write(dir / "size", "2048");
    fs::create_directory_symlink(dir, root_ / "dev/block" / majmin);
    return dir;
  }
  static void write(const fs::path& p, const std::string& s) { std::ofstream(p) << s << "\n"; }
  [[nodiscard]] const fs::path& root() const { return root_; }

 private:
  fs::path root_;
};

TEST(Topology, DescribesDisksPartitionsLoopsAndDm) {
  FakeSysfs sys;
  sys.add("pci0/virtio1/block/vda", "254:0");
  const auto part = sys.add("pci0/virtio1/block/vda/vda1", "254:1");
  FakeSysfs::write(part / "partition", "1");
  FakeSysfs::write(part / "start", "2048");
  const auto loop = sys.add("virtual/block/loop3", "7:3");
  fs::create_directory(loop / "loop");
  FakeSysfs::write(loop / "loop/backing_file", "/var/tmp/v2p disk.img");
  FakeSysfs::write(loop / "loop/offset", "1048576");
  const auto dm = sys.add("virtual/block/dm-0", "253:0");
  fs::create_directory(dm / "dm");

  const auto disk = describe_device(DeviceId::from_major_minor(254, 0), sys.root());
  ASSERT_TRUE(disk);
  EXPECT_EQ(disk->kind, DeviceKind::kDisk);
  EXPECT_EQ(disk->name, "vda");
  EXPECT_EQ(disk->size_sectors, 2048U);

  const auto p = describe_device(DeviceId::from_major_minor(254, 1), sys.root());
  ASSERT_TRUE(p);
  EXPECT_EQ(p->kind, DeviceKind::kPartition);
  EXPECT_EQ(p->start_sector, 2048U);
  EXPECT_EQ(p->parent, DeviceId::from_major_minor(254, 0));

  const auto l = describe_device(DeviceId::from_major_minor(7, 3), sys.root());
  ASSERT_TRUE(l);
  EXPECT_EQ(l->kind, DeviceKind::kLoop);
  EXPECT_EQ(l->backing_file, "/var/tmp/v2p disk.img");
  EXPECT_EQ(l->backing_offset, 1048576U);

  EXPECT_EQ(describe_device(DeviceId::from_major_minor(253, 0), sys.root())->kind,
            DeviceKind::kDeviceMapper);
  EXPECT_FALSE(describe_device(DeviceId::from_major_minor(9, 9), sys.root()));
}

TEST(Topology, DeviceOfPath) {
  // The root file system of a test machine is on some block device; /proc is on none.
  EXPECT_NE(device_of_path("/"), DeviceId{});
  EXPECT_THROW(device_of_path("/proc/self/status"), Error);
  EXPECT_THROW(device_of_path("/nonexistent/v2p"), Error);
  EXPECT_THROW(device_of_node("/dev/null"), Error);
}

TEST(Topology, MapsAFileRangeOnTheRootFileSystem) {
  // FIEMAP works unprivileged on ext4/xfs; skip where the temp dir cannot answer it.
  const auto file = fs::temp_directory_path() / ("v2p-fiemap-" + std::to_string(::getpid()));
  {
    std::ofstream out(file, std::ios::binary);
    const std::string block(8192, 'x');
    out << block;
  }
  std::vector<DeviceRange> ranges;
  try {
    ranges = map_file_range(file, 0, 8192);
  } catch (const Error& e) {
    fs::remove(file);
    V2P_SKIP_MACHINE(std::string("FIEMAP not usable here: ") + e.what());
  }
  fs::remove(file);
  std::uint64_t sectors = 0;
  for (const auto& r : ranges) sectors += r.sectors;
  EXPECT_EQ(sectors, 16U);
}

}  // namespace
}  // namespace v2p::pfilter
