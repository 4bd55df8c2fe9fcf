// Verification against real file systems: the layout (FIEMAP, btrfs chunk tree, qemu-img map)
// is itself checked by reading the bytes back from the loop device, then a map built from it
// must verify at 100% and a perturbed one must not. Needs root (loop devices, mount).
#include "correlator/verify.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>

#include "common/loop_filesystem.hpp"
#include "common/subprocess.hpp"
#include "common/test_skip.hpp"

namespace v2p::correlator {
namespace {

const VdiskKey kKey{VmId{1}, VdiskId{1}};
constexpr std::uint64_t kMiB = 1 << 20;

std::filesystem::path workdir(const std::string& what) {
  auto d =
      std::filesystem::path("/var/tmp") / ("v2p-verify-" + what + "." + std::to_string(::getpid()));
  std::filesystem::create_directories(d);
  return d;
}

// Writes `len` bytes of a seeded pattern at `off` and syncs, interleaved by the caller with
// writes to another file so the allocator fragments the image.
void write_at(const std::filesystem::path& p, std::uint64_t off, std::uint64_t len,
              std::uint32_t seed) {
  std::vector<char> buf(len);
  std::mt19937 rng(seed);
  for (auto& c : buf) c = static_cast<char>(rng());
  const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, buf.data(), len, static_cast<off_t>(off)), static_cast<ssize_t>(len));
  ::fsync(fd);
  ::close(fd);
}

std::vector<char> read_at(const std::filesystem::path& p, std::uint64_t off, std::size_t len,
                          bool direct) {
  const int fd = ::open(p.c_str(), O_RDONLY | (direct ? O_DIRECT : 0));
  if (fd < 0) return {};
  void* mem = nullptr;
  if (::posix_memalign(&mem, 4096, len) != 0) return {};
  std::unique_ptr<void, decltype(&std::free)> hold(mem, &std::free);
  const auto n = ::pread(fd, mem, len, static_cast<off_t>(off));
  ::close(fd);
  if (n != static_cast<ssize_t>(len)) return {};
  const auto* c = static_cast<const char*>(mem);
  return {c, c + len};
}

// The layout is ground truth only if the device really holds the file's bytes there.
void expect_layout_matches_device(const std::vector<LayoutExtent>& layout,
                                  const std::filesystem::path& image, const std::string& dev) {
  ASSERT_FALSE(layout.empty());
  for (const auto& l : layout) {
    if (l.unwritten) continue;
    const std::size_t n = 4096;
    EXPECT_EQ(read_at(dev, l.device_offset, n, true), read_at(image, l.logical, n, false))
        << "layout extent at file offset " << l.logical << " device offset " << l.device_offset;
  }
}

V2PMap map_of(const std::vector<LayoutExtent>& layout, DeviceId dev) {
  V2PMap m;
  for (const auto& e : layout_extents(layout, dev))
    m.map(kKey, {e.voffset, e.length, dev, e.sector, 1, 1.0f});
  return m;
}

class VerifyOnRealFs : public ::testing::TestWithParam<std::string> {};

TEST_P(VerifyOnRealFs, MapFromGroundTruthIsExactAndPerturbationIsReported) {
  V2P_REQUIRE_ROOT("loop devices, mount");
  V2P_REQUIRE_TOOLS("mkfs." + GetParam());
  const auto dir = workdir(GetParam());
  {
    LoopFilesystem fs({dir / "backing.img", dir / "mnt", 512 * kMiB, GetParam(), true});
    const auto image = fs.mountpoint() / "vm.raw";
    std::ofstream(image).close();
    std::filesystem::resize_file(image, 64 * kMiB);
    std::mt19937 rng(7);
    for (std::uint32_t i = 0; i < 24; ++i) {
      write_at(image, (rng() % 60) * kMiB + (rng() % 16) * 4096, 256 * 1024 + (rng() % 8) * 4096,
               i);
      write_at(fs.mountpoint() / "filler", i * 128 * 1024, 128 * 1024, 1000 + i);
    }
    const auto layout = image_layout(image);
    expect_layout_matches_device(layout, image, fs.loop_device());
    EXPECT_GT(layout.size(), 1u);

    V2PMap m = map_of(layout, fs.device());
    auto r = verify_against_fiemap(m, kKey, image, fs.device());
    EXPECT_EQ(r.bytes_wrong, 0u);
    EXPECT_EQ(r.bytes_right, r.bytes_observed);
    EXPECT_DOUBLE_EQ(r.accuracy(), 1.0);
    EXPECT_DOUBLE_EQ(r.coverage(), 1.0);
    EXPECT_TRUE(r.mismatches.empty());

    // One 4 KiB block placed elsewhere, one block mapped inside a hole.
    const auto& first = layout.front();
    m.map(kKey, {VirtualOffset{first.logical + 4096}, 4096, fs.device(),
                 PhysicalSector{(500 * kMiB) / 512}, 2, 1.0f});
    std::uint64_t hole = 0;
    while (std::any_of(layout.begin(), layout.end(), [&](const LayoutExtent& l) {
      return hole + 4096 > l.logical && hole < l.logical + l.length;
    })) {
      hole += 4096;
    }
    m.map(kKey,
          {VirtualOffset{hole}, 4096, fs.device(), PhysicalSector{(501 * kMiB) / 512}, 2, 1.0f});
    r = verify_against_fiemap(m, kKey, image, fs.device());
    EXPECT_EQ(r.bytes_wrong, 8192u);
    EXPECT_LT(r.accuracy(), 1.0);
    ASSERT_EQ(r.mismatches.size(), 2u);
    const auto mentions = [&](const char* what) {
      return std::any_of(r.mismatches.begin(), r.mismatches.end(),
                         [&](const std::string& m) { return m.find(what) != std::string::npos; });
    };
    EXPECT_TRUE(mentions("map says")) << r.mismatches[0];
    EXPECT_TRUE(mentions("hole")) << r.mismatches[0];
  }
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(FileSystems, VerifyOnRealFs, ::testing::Values("ext4", "xfs", "btrfs"));

TEST(VerifyQcow2, ComposesQemuImgMapWithFiemap) {
  V2P_REQUIRE_ROOT("loop devices, mount");
  V2P_REQUIRE_TOOLS("qemu-img", "qemu-io");
  const auto dir = workdir("qcow2");
  {
    LoopFilesystem fs({dir / "backing.img", dir / "mnt", 256 * kMiB, "ext4", true});
    const auto image = fs.mountpoint() / "vm.qcow2";
    run_checked({"qemu-img", "create", "-q", "-f", "qcow2", image.string(), "64M"});
    run_checked({"qemu-io", "-f", "qcow2", "-c", "write -P 0xab 1M 1M", "-c",
                 "write -P 0xcd 10M 512k", image.string()});
    ASSERT_TRUE(is_qcow2(image));
    const auto layout = image_layout(image);
    std::uint64_t total = 0;
    for (const auto& l : layout) {
      total += l.length;
      const std::uint64_t in_first = l.logical >= kMiB && l.logical < 2 * kMiB;
      const auto dev_bytes = read_at(fs.loop_device(), l.device_offset & ~4095ULL, 4096, true);
      ASSERT_EQ(dev_bytes.size(), 4096u);
      EXPECT_EQ(static_cast<unsigned char>(dev_bytes[l.device_offset & 4095]),
                in_first ? 0xab : 0xcd)
          << "guest offset " << l.logical;
    }
    EXPECT_EQ(total, kMiB + kMiB / 2);
    const V2PMap m = map_of(layout, fs.device());
    const auto r = verify_against_fiemap(m, kKey, image, fs.device());
    EXPECT_DOUBLE_EQ(r.accuracy(), 1.0);
    EXPECT_DOUBLE_EQ(r.coverage(), 1.0);
  }
  std::filesystem::remove_all(dir);
}

TEST(VerifyLayout, BtrfsTranslationSplitsAtChunkBoundaries) {
  const std::vector<BtrfsChunk> chunks{{1000, 100, 5000, 1, 1, 1}, {1100, 100, 9000, 1, 1, 1}};
  const auto out = btrfs_to_device({{0, 150, 1050, false}}, chunks);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].device_offset, 5050u);
  EXPECT_EQ(out[0].length, 50u);
  EXPECT_EQ(out[1].logical, 50u);
  EXPECT_EQ(out[1].device_offset, 9000u);
  EXPECT_THROW(btrfs_to_device({{0, 10, 5, false}}, chunks), std::exception);
}

}  // namespace
}  // namespace v2p::correlator
