// The map stays exact when the probe counts repeats instead of sending them: the export publishes
// each slot's context (pfilter::SlotTable), so re-reads and in-place rewrites of the same blocks
// are suppressed in the kernel, and the map recovered from what was sent must still equal FIEMAP,
// on ext4, xfs and btrfs (nocow image), at QD1 and QD32.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

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

std::vector<std::string> fio(const std::string& uri, const std::string& rw,
                             const std::string& depth, const std::string& extra) {
  return {"fio",           "--name=repeat", "--ioengine=nbd",       "--uri=" + uri,
          "--rw=" + rw,    "--bs=4k",       "--iodepth=" + depth,   "--size=8M",
          "--randseed=27", extra,           "--output-format=terse"};
}

class SuppressedChainTest : public ::testing::TestWithParam<ChainCase> {};

TEST_P(SuppressedChainTest, RepeatsAreCountedAndTheMapStaysExact) {
  const auto& param = GetParam();
  V2P_REQUIRE_ROOT("loop devices, eBPF");
  V2P_REQUIRE_BTF();
  V2P_REQUIRE_TOOLS("mkfs." + param.fs, "fio");
  const auto dir =
      std::filesystem::path("/var/tmp") / ("v2p-suppressed-chain." + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    LoopFilesystem fs({dir / "host.img", dir / "mnt", 512ULL << 20, param.fs, true});
    const auto image = fs.mountpoint() / "vm1-disk0.raw";
    create_sparse_image(image, 64ULL << 20, param.fs == "btrfs");
    cli::LiveChain chain(
        {{fs.device()}, {vfilter::image_vdisk("vm1", "disk0", image)}, dir / "s.sock"});
    const std::string uri = "nbd+unix:///disk0?socket=" + (dir / "s.sock").string();
    const std::string depth = param.workload == "fio-qd1" ? "1" : "32";
    auto run = [&](const std::vector<std::string>& argv) {
      ChildProcess client(argv);
      while (!client.exited()) chain.pump(50);
      std::string out;
      for (const auto& l : client.read_lines()) out += l + "\n";
      EXPECT_EQ(client.exit_code(), 0) << out;
    };
    // Allocate, re-read three times, rewrite in place: only the first pass of each is news.
    run(fio(uri, "randwrite", depth, "--end_fsync=1"));
    run(fio(uri, "randread", depth, "--loops=3"));
    run(fio(uri, "randwrite", depth, "--end_fsync=1"));
    chain.settle();

    const auto& corr = chain.correlator();
    ASSERT_EQ(corr.vdisk_declarations().size(), 1u);
    const VdiskKey key{VmId{corr.vdisk_declarations()[0].vm_id},
                       VdiskId{corr.vdisk_declarations()[0].vdisk_id}};
    const auto report = correlator::verify_against_fiemap(corr.map(), key, image, fs.device());
    EXPECT_EQ(report.bytes_observed, 8u << 20);
    EXPECT_EQ(report.bytes_wrong, 0u) << (report.mismatches.empty() ? "" : report.mismatches[0]);
    EXPECT_DOUBLE_EQ(report.accuracy(), 1.0);
    EXPECT_DOUBLE_EQ(report.coverage(), 1.0);
    EXPECT_EQ(corr.stats().lost_events, 0u);
    // 2 048 blocks read 3 times and rewritten once: at least the two later reads and the
    // rewrite of most of them are counted, not sent.
    EXPECT_GE(chain.suppressed_bios(), 2048u * 2) << "repeats were sent";
  }
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(
    FileSystems, SuppressedChainTest,
    ::testing::Values(ChainCase{"ext4", "fio-qd1"}, ChainCase{"ext4", "fio-qd32"},
                      ChainCase{"xfs", "fio-qd1"}, ChainCase{"xfs", "fio-qd32"},
                      ChainCase{"btrfs", "fio-qd1"}, ChainCase{"btrfs", "fio-qd32"}),
    case_name);

}  // namespace
}  // namespace v2p
