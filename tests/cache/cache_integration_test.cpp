// The cache in the vfilter data path on a real copy-on-write file system (root): an xfs with
// reflink on a loop device holds a template image and two reflinked clones, served as two VMs
// through one shared cache. Everything is undone by destructors, also when a check fails.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <random>

#include "common/loop_filesystem.hpp"
#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "policy/cache/cache_stage.hpp"
#include "vfilter/file_backend.hpp"
#include "vfilter/nbd_test_client.hpp"
#include "vfilter/server.hpp"

namespace v2p::cache {
namespace {

using vfilter::testing::NbdTestClient;
using vfilter::testing::TempDir;

constexpr std::uint64_t kImage = 32ULL << 20;
constexpr std::uint32_t kBlock = 64 << 10;

#define REQUIRE_ROOT_AND(tool)            \
  V2P_REQUIRE_ROOT("loop device, mount"); \
  V2P_REQUIRE_TOOLS("mkfs.xfs", tool)

// Random contents, so a block served for another would not go unnoticed.
void write_template(const std::filesystem::path& path) {
  std::mt19937_64 rng(2024);
  std::vector<std::uint64_t> buf(kImage / 8);
  for (auto& w : buf) w = rng();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, buf.data(), kImage, 0), static_cast<ssize_t>(kImage));
  ASSERT_EQ(::fsync(fd), 0);
  ::close(fd);
}

struct Rig {
  explicit Rig(bool reflink) {
    LoopFilesystem::Options o;
    o.backing_file = dir.path() / "fs.img";
    o.mountpoint = dir.path() / "mnt";
    o.size_bytes = 512ULL << 20;
    o.fs_type = "xfs";
    fs = std::make_unique<LoopFilesystem>(o);
    const auto templ = fs->mountpoint() / "template.raw";
    write_template(templ);
    for (const char* c : {"clone-a.raw", "clone-b.raw"}) {
      images.push_back(fs->mountpoint() / c);
      run_checked({"cp", reflink ? "--reflink=always" : "--reflink=never", templ.string(),
                   images.back().string()});
    }
  }
  void serve(const FlashCacheOptions& co) {
    cache = std::make_shared<FlashCache>(co);
    vfilter::ServerConfig c;
    const char* vms[2] = {"vm1", "vm2"};
    for (std::size_t i = 0; i < 2; ++i) {
      vfilter::VdiskConfig v;
      v.vm = vms[i];
      v.vdisk = "disk" + std::to_string(i);
      v.image = images[i];
      auto file = std::make_shared<vfilter::FileBackend>(images[i], false, true);
      stages.push_back(std::make_shared<CacheStage>(
          cache, file, std::make_unique<FiemapResolver>(images[i]), v.vdisk));
      v.backend = stages.back();
      c.vdisks.push_back(v);
    }
    socket = dir.path() / "v2p.sock";
    c.unix_socket = socket;
    server = vfilter::Server::start(c, nullptr);
  }
  std::string uri(int i) const {
    return "nbd+unix:///disk" + std::to_string(i) + "?socket=" + socket.string();
  }
  ~Rig() {
    if (server) server->stop();
  }

  TempDir dir;
  std::unique_ptr<LoopFilesystem> fs;
  std::vector<std::filesystem::path> images;
  std::shared_ptr<FlashCache> cache;
  std::vector<std::shared_ptr<CacheStage>> stages;
  std::filesystem::path socket;
  std::unique_ptr<vfilter::Server> server;
};

std::vector<std::byte> read_all(const std::filesystem::path& sock, const std::string& name) {
  NbdTestClient c(sock, name);
  std::vector<std::byte> out(kImage);
  std::vector<std::byte> buf(1 << 20);
  for (std::uint64_t off = 0; off < kImage; off += buf.size()) {
    EXPECT_EQ(c.read(off, buf), 0U);
    std::copy(buf.begin(), buf.end(), out.begin() + static_cast<long>(off));
  }
  return out;
}

TEST(CacheXfs, ReflinkedClonesServedAsTwoVmsAreCachedOnce) {
  REQUIRE_ROOT_AND("qemu-io");
  Rig r(true);
  // The clones really share: same physical place for the same offset.
  FiemapResolver ra(r.images[0]), rb(r.images[1]);
  ASSERT_TRUE(ra.locate(0, kBlock));
  ASSERT_EQ(ra.locate(0, kBlock), rb.locate(0, kBlock)) << "cp --reflink did not share extents";
  EXPECT_EQ(ra.device(), r.fs->device());

  FlashCacheOptions co;
  co.file = r.dir.path() / "cache.bin";
  co.size_bytes = 64ULL << 20;
  co.block_bytes = kBlock;
  co.write_mode = WriteMode::kWriteAround;
  r.serve(co);
  // vm1 warms the cache with qemu-io (second-hit admission: two passes).
  for (int pass = 0; pass < 2; ++pass) {
    const auto q = run_command({"qemu-io", "-f", "raw", "-c", "read 0 32M", r.uri(0)});
    ASSERT_EQ(q.exit_code, 0) << q.err;
  }
  const std::uint64_t blocks = kImage / kBlock;
  EXPECT_EQ(r.cache->entries(), blocks);
  const auto truth =
      vfilter::testing::read_file_range(r.fs->mountpoint() / "template.raw", 0, kImage);
  // vm2 reads its clone: every block from flash, nothing new cached, data right.
  EXPECT_EQ(read_all(r.socket, "disk1"), truth);
  const auto s2 = r.cache->vm_stats("vm2");
  ASSERT_TRUE(s2);
  EXPECT_EQ(s2->hits, blocks);
  EXPECT_EQ(s2->misses, 0U);
  EXPECT_EQ(s2->bytes_from_flash, kImage);
  EXPECT_EQ(r.cache->entries(), blocks) << "shared blocks held once";
  EXPECT_EQ(r.cache->vm_stats("vm1")->resident_bytes, kImage);
  EXPECT_EQ(read_all(r.socket, "disk0"), truth);
  for (const auto& k : r.cache->keys()) ASSERT_EQ(k.device, r.fs->device());

  // vm1 overwrites 4 KiB of a shared block: xfs copies on write; vm2 still reads the template.
  {
    NbdTestClient c(r.socket, "disk0");
    std::vector<std::byte> mine(4096, std::byte{0xee});
    ASSERT_EQ(c.write(1 << 20, mine), 0U);
    std::vector<std::byte> back(4096);
    ASSERT_EQ(c.read(1 << 20, back), 0U);
    EXPECT_EQ(back, mine);
  }
  const auto b = read_all(r.socket, "disk1");
  EXPECT_EQ(b, truth);
  ra.refresh(1 << 20, 4096);
  EXPECT_NE(ra.locate(1 << 20, 4096), rb.locate(1 << 20, 4096)) << "the write did not relocate";
  EXPECT_EQ(r.stages[0]->relocations(), 1U);
  EXPECT_FALSE(r.cache->check());
}

TEST(CacheXfs, QuotasHoldUnderContentionFromFio) {
  REQUIRE_ROOT_AND("fio");
  if (run_command({"fio", "--enghelp=nbd"}).exit_code != 0)
    V2P_SKIP_MISSING_PACKAGE("fio lacks the nbd engine");
  Rig r(false);  // separate copies: each VM fills entries of its own
  FlashCacheOptions co;
  co.file = r.dir.path() / "cache.bin";
  co.size_bytes = 16ULL << 20;
  co.block_bytes = kBlock;
  co.quotas = {{"vm1", 4ULL << 20}, {"vm2", 8ULL << 20}};
  r.serve(co);
  std::vector<std::string> argv{"fio",
                                "--ioengine=nbd",
                                "--rw=randread",
                                "--bs=4k",
                                "--iodepth=8",
                                "--size=32M",
                                "--random_distribution=zipf:0.8",
                                "--time_based",
                                "--runtime=6",
                                "--output-format=terse"};
  for (int i = 0; i < 2; ++i) {
    argv.push_back("--name=vm" + std::to_string(i + 1));
    argv.push_back("--uri=" + r.uri(i));
  }
  const auto f = run_command(argv);
  ASSERT_EQ(f.exit_code, 0) << f.out << f.err;
  const auto s1 = r.cache->vm_stats("vm1"), s2 = r.cache->vm_stats("vm2");
  ASSERT_TRUE(s1 && s2);
  EXPECT_LE(s1->resident_bytes, 4ULL << 20);
  EXPECT_LE(s2->resident_bytes, 8ULL << 20);
  EXPECT_GT(s1->fills, 0U);
  EXPECT_GT(s2->fills, 0U);
  EXPECT_GT(s1->evictions + s2->evictions, 0U) << "no contention happened";
  EXPECT_GT(s1->hits, 0U);
  EXPECT_FALSE(r.cache->check());
}

}  // namespace
}  // namespace v2p::cache
