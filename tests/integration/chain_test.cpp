// The tagged path end to end on real file systems: v2p export + probe + correlator, driven by
// clients nobody here wrote (fio's nbd engine at QD1 and QD32, qemu-io), and the recovered map
// checked against FIEMAP.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "cli/live_chain.hpp"
#include "common/loop_filesystem.hpp"
#include "common/sparse_image.hpp"
#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "correlator/verify.hpp"
#include "integration/chain_workloads.hpp"

namespace v2p {
namespace {

using testing::case_name;
using testing::ChainCase;
using testing::workload_command;

class ChainTest : public ::testing::TestWithParam<ChainCase> {
 protected:
  void SetUp() override {
    V2P_REQUIRE_ROOT("loop devices, eBPF");
    V2P_REQUIRE_BTF();
    V2P_REQUIRE_TOOLS("mkfs." + GetParam().fs);
    const auto tool = GetParam().workload == "qemu-io" ? "qemu-io" : "fio";
    V2P_REQUIRE_TOOLS(tool);
    dir_ = std::filesystem::path("/var/tmp") / ("v2p-chain-test." + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::filesystem::path dir_;
};

TEST_P(ChainTest, TaggedPathMapIsExact) {
  const auto& param = GetParam();
  LoopFilesystem fs({dir_ / "host.img", dir_ / "mnt", 512ULL << 20, param.fs, true});
  const auto image = fs.mountpoint() / "vm1-disk0.raw";
  create_sparse_image(image, 64ULL << 20, param.fs == "btrfs");
  cli::LiveChain chain(
      {{fs.device()}, {vfilter::image_vdisk("vm1", "disk0", image)}, dir_ / "s.sock"});

  ChildProcess client(
      workload_command(param.workload, "nbd+unix:///disk0?socket=" + (dir_ / "s.sock").string()));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (!client.exited() && std::chrono::steady_clock::now() < deadline) chain.pump(50);
  std::string output;
  for (const auto& l : client.read_lines()) output += l + "\n";
  ASSERT_TRUE(client.exited()) << "workload did not finish in time";
  ASSERT_EQ(client.exit_code(), 0) << output;
  chain.settle();

  const auto& corr = chain.correlator();
  const auto decls = corr.vdisk_declarations();
  ASSERT_EQ(decls.size(), 1u);
  const VdiskKey key{VmId{decls[0].vm_id}, VdiskId{decls[0].vdisk_id}};
  const auto report = correlator::verify_against_fiemap(corr.map(), key, image, fs.device());
  EXPECT_GT(report.bytes_observed, 0u);
  EXPECT_EQ(report.bytes_wrong, 0u) << (report.mismatches.empty() ? "" : report.mismatches[0]);
  EXPECT_DOUBLE_EQ(report.accuracy(), 1.0);
  EXPECT_DOUBLE_EQ(report.coverage(), 1.0) << "every allocated byte was written through v2p";
  EXPECT_EQ(corr.stats().lost_events, 0u);
  EXPECT_GT(corr.stats().joined_exact, 0u);
}

// btrfs with data checksums (no NOCOW): direct writes become buffered there, so the vfilter
// writes them from threads whose own I/O priority carries the tag; every overwrite lands in a new
// place (copy-on-write) and the map must follow it.
TEST(BtrfsCopyOnWrite, MapFollowsOverwritesToTheirNewLocation) {
  V2P_REQUIRE_ROOT("loop devices, eBPF");
  V2P_REQUIRE_BTF();
  V2P_REQUIRE_TOOLS("mkfs.btrfs", "qemu-io");
  const auto dir =
      std::filesystem::path("/var/tmp") / ("v2p-chain-cow." + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    LoopFilesystem fs({dir / "host.img", dir / "mnt", 512ULL << 20, "btrfs", true});
    const auto image = fs.mountpoint() / "vm1-disk0.raw";
    create_sparse_image(image, 64ULL << 20, /*nocow=*/false);
    cli::LiveChain chain(
        {{fs.device()}, {vfilter::image_vdisk("vm1", "disk0", image)}, dir / "s.sock"});
    const std::string uri = "nbd+unix:///disk0?socket=" + (dir / "s.sock").string();
    auto run = [&](std::vector<std::string> argv) {
      ChildProcess client(argv);
      while (!client.exited()) chain.pump(50);
      std::string out;
      for (const auto& l : client.read_lines()) out += l + "\n";
      EXPECT_EQ(client.exit_code(), 0) << out;
    };
    run({"qemu-io", "-f", "raw", uri, "-c", "write -P 0x11 0 1M", "-c", "flush"});
    chain.settle();
    const auto& corr = chain.correlator();
    ASSERT_EQ(corr.vdisk_declarations().size(), 1u);
    const VdiskKey key{VmId{corr.vdisk_declarations()[0].vm_id},
                       VdiskId{corr.vdisk_declarations()[0].vdisk_id}};
    const auto first = corr.map().find(key, VirtualOffset{0});
    ASSERT_TRUE(first.has_value()) << "the first write was not mapped";

    run({"qemu-io", "-f", "raw", uri, "-c", "write -P 0x22 0 1M", "-c", "flush", "-c",
         "read -P 0x22 0 1M"});
    chain.settle();
    const auto second = corr.map().find(key, VirtualOffset{0});
    ASSERT_TRUE(second.has_value());
    EXPECT_NE(second->sector, first->sector) << "btrfs rewrote in place?";
    EXPECT_GE(second->generation, 2u) << "the relocation was not counted";

    const auto report = correlator::verify_against_fiemap(corr.map(), key, image, fs.device());
    EXPECT_EQ(report.bytes_observed, 1u << 20);
    EXPECT_EQ(report.bytes_wrong, 0u) << (report.mismatches.empty() ? "" : report.mismatches[0]);
    EXPECT_DOUBLE_EQ(report.accuracy(), 1.0);
  }
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(
    FileSystems, ChainTest,
    ::testing::Values(ChainCase{"ext4", "fio-qd1"}, ChainCase{"ext4", "fio-qd32"},
                      ChainCase{"ext4", "qemu-io"}, ChainCase{"xfs", "fio-qd1"},
                      ChainCase{"xfs", "fio-qd32"}, ChainCase{"xfs", "qemu-io"},
                      ChainCase{"btrfs", "fio-qd1"}, ChainCase{"btrfs", "fio-qd32"},
                      ChainCase{"btrfs", "qemu-io"}),
    case_name);

}  // namespace
}  // namespace v2p
