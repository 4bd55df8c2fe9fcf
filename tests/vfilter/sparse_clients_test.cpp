// Holes through the export, as real clients see them: qemu-img map and nbdinfo --map read
// base:allocation (checked against FIEMAP of the image), and nbdcopy / qemu-img convert use it
// to skip holes, so they read only the data and keep the copies sparse.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <map>

#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "test_server.hpp"

namespace v2p::vfilter {
namespace {

using namespace testing;
using Ranges = std::map<std::uint64_t, std::uint64_t>;  // start -> end, merged

void add_range(Ranges& r, std::uint64_t start, std::uint64_t end) {
  if (!r.empty()) {
    auto last = std::prev(r.end());
    if (last->second == start) {
      last->second = end;
      return;
    }
  }
  r[start] = end;
}

// Written (not unwritten-preallocated) extents of a file, merged; nullopt without FIEMAP.
std::optional<Ranges> fiemap_data(const std::filesystem::path& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  constexpr unsigned kCount = 256;
  std::vector<std::byte> buf(sizeof(fiemap) + kCount * sizeof(fiemap_extent));
  auto* fm = reinterpret_cast<fiemap*>(buf.data());
  Ranges out;
  std::uint64_t start = 0;
  for (;;) {
    std::fill(buf.begin(), buf.end(), std::byte{0});
    fm->fm_start = start;
    fm->fm_length = FIEMAP_MAX_OFFSET - start;
    fm->fm_flags = FIEMAP_FLAG_SYNC;
    fm->fm_extent_count = kCount;
    if (::ioctl(fd, FS_IOC_FIEMAP, fm) != 0) {
      ::close(fd);
      return std::nullopt;
    }
    if (fm->fm_mapped_extents == 0) break;
    bool last = false;
    for (unsigned i = 0; i < fm->fm_mapped_extents; ++i) {
      const fiemap_extent& e = fm->fm_extents[i];
      if (!(e.fe_flags & FIEMAP_EXTENT_UNWRITTEN)) {
        add_range(out, e.fe_logical, e.fe_logical + e.fe_length);
      }
      start = e.fe_logical + e.fe_length;
      last = last || (e.fe_flags & FIEMAP_EXTENT_LAST);
    }
    if (last) break;
  }
  ::close(fd);
  return out;
}

std::uint64_t allocated_bytes(const std::filesystem::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0);
  return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

std::uint64_t bytes_read(QueueSink& sink) {
  std::uint64_t n = 0;
  for (const auto& r : sink.drain()) {
    if (r.op == static_cast<std::uint8_t>(IoOp::kRead)) n += r.length;
  }
  return n;
}

// 64 MiB with data in three places; the rest never written.
struct SparseExport {
  SparseExport() {
    const auto w = run_command({"qemu-io", "-f", "raw", "-c", "write -P 0xab 1M 64k", "-c",
                                "write -P 0xcd 8M 1M", "-c", "write -P 0x11 40M 4k", s.uri()});
    EXPECT_TRUE(w.ok()) << w.err;
    s.sink.drain();
  }
  TestServer s{64 << 20};
  const Ranges written{
      {1 << 20, (1 << 20) + (64 << 10)}, {8 << 20, 9 << 20}, {40 << 20, (40 << 20) + 4096}};
};

TEST(NbdSparse, QemuImgMapShowsTheHoles) {
  V2P_REQUIRE_TOOLS("qemu-img", "qemu-io");
  SparseExport x;
  const auto r = run_command({"qemu-img", "map", "--output=json", "-f", "raw", x.s.uri()});
  ASSERT_TRUE(r.ok()) << r.err;
  Ranges data;
  std::uint64_t covered = 0;
  for (const auto& e : nlohmann::json::parse(r.out)) {
    const auto start = e["start"].get<std::uint64_t>();
    const auto len = e["length"].get<std::uint64_t>();
    EXPECT_EQ(start, covered);
    covered += len;
    if (e["data"].get<bool>()) {
      add_range(data, start, start + len);
    } else {
      EXPECT_TRUE(e["zero"].get<bool>()) << "a hole reads as zeros";
    }
  }
  EXPECT_EQ(covered, 64u << 20);
  EXPECT_EQ(data, x.written);
}

TEST(NbdSparse, NbdinfoMapAgreesWithFiemap) {
  V2P_REQUIRE_TOOLS("nbdinfo", "qemu-io");
  SparseExport x;
  const auto fiemap = fiemap_data(x.s.image);
  if (!fiemap) V2P_SKIP_MACHINE("the temporary directory's file system has no FIEMAP");
  const auto r = run_command({"nbdinfo", "--map", "--json", x.s.uri()});
  ASSERT_TRUE(r.ok()) << r.err;
  Ranges data;
  for (const auto& e : nlohmann::json::parse(r.out)) {
    const auto type = e["type"].get<std::uint32_t>();
    EXPECT_TRUE(type == 0 || type == 3) << e.dump();
    const auto start = e["offset"].get<std::uint64_t>();
    if (type == 0) add_range(data, start, start + e["length"].get<std::uint64_t>());
  }
  EXPECT_EQ(data, *fiemap);
  EXPECT_EQ(data, x.written);
}

TEST(NbdSparse, NbdcopyReadsOnlyDataAndKeepsTheCopySparse) {
  V2P_REQUIRE_TOOLS("nbdcopy", "qemu-io");
  SparseExport x;
  const auto out = x.s.dir.path() / "copy.raw";
  const auto r = run_command({"nbdcopy", x.s.uri(), out.string()});
  ASSERT_TRUE(r.ok()) << r.err;
  // Holes are skipped by block status, not read and then found to be zero.
  EXPECT_LE(bytes_read(x.s.sink), 4u << 20);
  EXPECT_LE(allocated_bytes(out), 4u << 20);
  EXPECT_TRUE(run_command({"cmp", out.string(), x.s.image.string()}).ok());
}

TEST(NbdSparse, QemuImgConvertKeepsTheImageSparse) {
  V2P_REQUIRE_TOOLS("qemu-img", "qemu-io");
  SparseExport x;
  const auto out = x.s.dir.path() / "convert.raw";
  const auto r =
      run_command({"qemu-img", "convert", "-f", "raw", "-O", "raw", x.s.uri(), out.string()});
  ASSERT_TRUE(r.ok()) << r.err;
  // qemu-img also finds zeros in data it reads; that it read only the data shows the holes
  // came from block status.
  EXPECT_LE(bytes_read(x.s.sink), 4u << 20);
  EXPECT_LE(allocated_bytes(out), 4u << 20);
  EXPECT_TRUE(run_command({"cmp", out.string(), x.s.image.string()}).ok());
}

TEST(NbdSparse, ReadsOfHolesComeBackAsZerosAndCacheReads) {
  V2P_REQUIRE_TOOLS("qemu-io");
  SparseExport x;
  // Hole chunks (all-zero reads) and data chunks side by side in one request stream.
  const auto r = run_command({"qemu-io", "-f", "raw", "-c", "read -P 0 0 1M", "-c",
                              "read -P 0xab 1M 64k", "-c", "read -P 0 2M 4k", x.s.uri()});
  EXPECT_TRUE(r.ok()) << r.out << r.err;
  EXPECT_EQ(r.out.find("Pattern verification failed"), std::string::npos) << r.out;
  x.s.sink.drain();
  if (!have_tool("nbdsh")) V2P_SKIP_MISSING_PACKAGE("needs nbdsh (not installed)");
  const auto c = run_command({"env", "PATH=/usr/bin:/bin", "nbdsh", "-u", x.s.uri(), "-c",
                              "assert h.can_cache()\nh.cache(65536, 8 << 20)"});
  ASSERT_TRUE(c.ok()) << c.err;
  EXPECT_EQ(bytes_read(x.s.sink), 65536u);  // CACHE reads through the stack, tagged
}

}  // namespace
}  // namespace v2p::vfilter
