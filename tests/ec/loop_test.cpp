// Stores on real, separate file systems (root only). Each store is an ext4 file system on a loop
// device whose backing file sits on its own tmpfs mount, so every store resolves to a different
// failure domain and placement runs with allow_shared_domains off. One store is unmounted in
// the middle: reads go on, writes go around it, and nothing is written into the bare mountpoint.
#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <set>

#include "common/error.hpp"
#include "common/loop_filesystem.hpp"
#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "ec/pool.hpp"
#include "pool_fixture.hpp"

namespace v2p::ec {
namespace {

namespace fs = std::filesystem;

// A tmpfs mount, unmounted and removed again on destruction.
class Tmpfs {
 public:
  explicit Tmpfs(fs::path dir) : dir_(std::move(dir)) {
    fs::create_directories(dir_);
    run_checked({"mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", dir_.string()});
  }
  ~Tmpfs() {
    run_command({"umount", "-l", dir_.string()});
    std::error_code ec;
    fs::remove(dir_, ec);
  }
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;
  [[nodiscard]] const fs::path& dir() const { return dir_; }

 private:
  fs::path dir_;
};

class EcSeparateFilesystems : public ::testing::Test {
 protected:
  void SetUp() override {
    V2P_REQUIRE_ROOT("tmpfs and loop mounts");
    V2P_REQUIRE_TOOLS("mkfs.ext4");
    dir_ = fs::path("/var/tmp") / ("v2p-ec-loop." + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    filesystems_.clear();  // loop file systems before the tmpfs mounts they live on
    tmpfs_.clear();
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  // Store `i` on its own disk; `backing_on` picks the tmpfs its backing file lives on.
  fs::path add_filesystem(int i, int backing_on) {
    while (static_cast<int>(tmpfs_.size()) <= backing_on) {
      tmpfs_.push_back(std::make_unique<Tmpfs>(dir_ / ("tmpfs" + std::to_string(tmpfs_.size()))));
    }
    filesystems_.push_back(std::make_unique<LoopFilesystem>(LoopFilesystem::Options{
        tmpfs_[static_cast<std::size_t>(backing_on)]->dir() / ("disk" + std::to_string(i) + ".img"),
        dir_ / ("mnt" + std::to_string(i)), 48ULL << 20, "ext4", false}));
    return filesystems_.back()->mountpoint();
  }
  PoolConfig config(int stores) {
    PoolConfig c;
    c.metadata_dir = dir_ / "meta";
    for (int i = 1; i <= stores; ++i) {
      // Store 2 is the mountpoint itself: unmounted, it is an empty directory on another disk.
      const auto mp = mountpoints_.at(static_cast<std::size_t>(i - 1));
      const auto path = i == 2 ? mp : mp / "store";
      fs::create_directories(path);
      c.stores.push_back({static_cast<std::uint32_t>(i), path});
    }
    c.default_layout = {4, 2};
    c.container_bytes = 1U << 20;
    c.block_bytes = 16U << 10;
    c.allow_shared_domains = false;
    return c;
  }

  fs::path dir_;
  std::vector<std::unique_ptr<Tmpfs>> tmpfs_;
  std::vector<std::unique_ptr<LoopFilesystem>> filesystems_;
  std::vector<fs::path> mountpoints_;
};

const VdiskKey kDisk{VmId{9}, VdiskId{0}};

TEST_F(EcSeparateFilesystems, SurvivesUnmountedStores) {
  for (int i = 1; i <= 7; ++i) mountpoints_.push_back(add_filesystem(i, i - 1));
  const auto cfg = config(7);
  const auto data = testing::pattern(5, 3U << 20);
  {
    Pool pool(cfg);
    pool.write(kDisk, VirtualOffset{0}, data);
    pool.flush();
    const auto s = pool.status();
    std::set<std::string> domains;
    for (const auto& st : s.stores) domains.insert(st.domain);
    EXPECT_EQ(domains.size(), 7U) << "stores should resolve to 7 failure domains";
    for (const auto& d : domains) EXPECT_NE(d.find("tmpfs"), std::string::npos) << d;
    ASSERT_EQ(s.vms.size(), 1U);
    EXPECT_EQ(s.vms[0].containers_sharing_domains, 0U);
  }
  // Unmount store 2's file system while a pool is open.
  Pool pool(cfg);
  run_checked({"umount", mountpoints_[1].string()});
  auto r = pool.read(kDisk, VirtualOffset{0}, data.size());
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r.value(), data);
  // New containers go to the six stores still mounted, none into the bare mountpoint.
  const auto more = testing::pattern(6, 2U << 20);
  pool.write(kDisk, VirtualOffset{data.size()}, more);
  pool.flush();
  EXPECT_TRUE(fs::is_empty(mountpoints_[1])) << "wrote into an unmounted store's mountpoint";
  // And a second store unmounted: m = 2 lost, everything still reads back.
  run_checked({"umount", mountpoints_[4].string()});
  r = pool.read(kDisk, VirtualOffset{0}, data.size() + more.size());
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_TRUE(std::equal(data.begin(), data.end(), r.value().begin()));
  EXPECT_TRUE(std::equal(more.begin(), more.end(),
                         r.value().begin() + static_cast<std::ptrdiff_t>(data.size())));
  const auto s = pool.status();
  EXPECT_GT(s.reads.degraded, 0U);
  // A third: the first containers (on all 7 stores... 6 of them) may now be unreadable; any
  // read either returns the right bytes or says why.
  run_checked({"umount", mountpoints_[5].string()});
  for (std::uint64_t off = 0; off < data.size(); off += 1U << 20) {
    auto part = pool.read(kDisk, VirtualOffset{off}, 1U << 20);
    if (part.ok()) {
      EXPECT_TRUE(std::equal(part.value().begin(), part.value().end(),
                             data.begin() + static_cast<std::ptrdiff_t>(off)));
    } else {
      EXPECT_NE(part.error().find("needed"), std::string::npos) << part.error();
    }
  }
}

TEST_F(EcSeparateFilesystems, BackingFilesOnOneDiskShareADomain) {
  // Two loop file systems, both backed by files on the same tmpfs: one failure domain.
  for (int i = 1; i <= 6; ++i) mountpoints_.push_back(add_filesystem(i, i <= 2 ? 0 : i - 2));
  auto cfg = config(6);
  Pool pool(cfg);
  pool.write(kDisk, VirtualOffset{0}, testing::pattern(1, 100000));
  try {
    pool.flush();
    FAIL() << "placed 6 chunks on 5 failure domains";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("distinct failure domains, the online stores give 5"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace v2p::ec
