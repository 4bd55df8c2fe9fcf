// The host-layout module's parsers against golden files (tests/common/golden/) and edge cases.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>

#include "common/error.hpp"
#include "common/host_layout/aligned_buffer.hpp"
#include "common/host_layout/mountinfo.hpp"
#include "common/host_layout/size_parse.hpp"
#include "common/host_layout/unique_fd.hpp"

namespace v2p::host_layout {
namespace {

const std::filesystem::path kGolden = V2P_GOLDEN_DIR;

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Bind mounts, btrfs subvolumes (one device, two roots), an escaped space, optional fields
// (master:2), a mount over a mount point, and malformed lines (skipped).
TEST(HostLayoutMountinfo, GoldenFile) {
  const auto mounts = read_mountinfo(kGolden / "mountinfo.txt");
  std::string text;
  for (const auto& m : mounts) {
    text += std::to_string(m.major) + ":" + std::to_string(m.minor) + "|" + m.root + "|" +
            m.mount_point + "|" + m.fs_type + "|" + m.source + "\n";
  }
  EXPECT_EQ(text, slurp(kGolden / "mountinfo.golden"));
}

TEST(HostLayoutMountinfo, TheLongestAndLastMountHoldsAPath) {
  const auto mounts = read_mountinfo(kGolden / "mountinfo.txt");
  const auto* m = mount_holding(mounts, "/var/lib/images/vm1.raw");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->source, "/dev/sdb1") << "the later mount over /var/lib/images hides the subvolume";
  m = mount_holding(mounts, "/home/user/x");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->root, "/@home");
  m = mount_holding(mounts, "/homeless");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->mount_point, "/") << "a prefix that is not a whole component does not count";
  m = mount_holding(mounts, "/mnt/my disk/tmp/f");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->fs_type, "tmpfs");
  EXPECT_EQ(mount_holding({}, "/x"), nullptr);
  EXPECT_FALSE(parse_mountinfo_line("1 2 3:4 / /a rw -"));
  EXPECT_FALSE(parse_mountinfo_line(""));
  EXPECT_TRUE(read_mountinfo("/nonexistent/mountinfo").empty());
}

TEST(HostLayoutSize, OneParserForEveryFlag) {
  EXPECT_EQ(parse_size("65536"), 65536U);
  EXPECT_EQ(parse_size("64k"), 64U << 10);
  EXPECT_EQ(parse_size("512MiB"), 512ULL << 20);
  EXPECT_EQ(parse_size("8G"), 8ULL << 30);
  EXPECT_EQ(parse_size("2tb"), 2ULL << 40);
  EXPECT_EQ(parse_size("7B"), 7U);
  EXPECT_THROW(parse_size(""), Error);
  EXPECT_THROW(parse_size("G"), Error);
  EXPECT_THROW(parse_size("12Q"), Error);
  EXPECT_THROW(parse_size("-1"), Error);
  EXPECT_THROW(parse_size("99999999999999999999"), Error);
  EXPECT_THROW(parse_size("16777216T"), Error) << "2^64 bytes overflows";
  try {
    parse_size("12Q", "--tier-extent");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "--tier-extent '12Q' has an unknown unit (use K, M, G or T)");
  }
}

TEST(HostLayoutBuffers, AlignedAndOwnedOnce) {
  AlignedBuffer b(5000, 8192);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(b.data()) % 8192, 0U);
  EXPECT_GE(b.size(), 5000U);
  AlignedBuffer moved = std::move(b);
  EXPECT_EQ(b.data(), nullptr);
  EXPECT_TRUE(moved.try_resize(1 << 20));
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(moved.data()) % 8192, 0U) << "never loses alignment";

  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  {
    UniqueFd r(fds[0]);
    UniqueFd w(fds[1]);
    UniqueFd other = std::move(w);
    EXPECT_FALSE(w);
    EXPECT_EQ(other.get(), fds[1]);
  }
  EXPECT_EQ(::fcntl(fds[0], F_GETFD), -1) << "closed when its owner went";
  EXPECT_EQ(::fcntl(fds[1], F_GETFD), -1);
}

}  // namespace
}  // namespace v2p::host_layout
