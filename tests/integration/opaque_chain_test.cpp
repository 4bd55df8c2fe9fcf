// The opaque path end to end: a qcow2 image on a real file system, served by qemu-storage-daemon,
// exported by v2p through libnbd (VdiskConfig::upstream), driven by qemu-io and fio's nbd engine
// at QD1 and QD32. The daemon's host I/O carries no tag; the vfilter declares the daemon's
// process in the record stream and the correlator joins its bios by completion window, each with
// a confidence. Checked against `qemu-img map` composed with FIEMAP:
//  - the map's confidence is honest: of the bytes (and of the window decisions) it is certain
//    about, at least 99% are right, and overall it is not more confident than it is right;
//  - nothing of any other origin (a noisy neighbour writing O_DIRECT on the same file system, the
//    journal, the tagged vdisk next to it) is attributed to the VM: every byte its map names lies
//    inside the qcow2 file;
//  - a tagged raw vdisk served by the same chain at the same time still maps 100% at confidence 1.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <thread>

#include <fmt/core.h>

#include "cli/live_chain.hpp"
#include "common/loop_filesystem.hpp"
#include "common/sparse_image.hpp"
#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "correlator/image_layout.hpp"
#include "correlator/verify.hpp"
#include "integration/chain_workloads.hpp"

namespace v2p {
namespace {

using testing::case_name;
using testing::ChainCase;
using testing::workload_command;

// Bytes of [offset, offset + length) on the device that no extent of `layout` covers.
std::uint64_t bytes_outside(const std::vector<correlator::LayoutExtent>& layout,
                            std::uint64_t offset, std::uint64_t length) {
  std::uint64_t covered = 0;
  for (const auto& l : layout) {
    const std::uint64_t a = std::max(offset, l.device_offset);
    const std::uint64_t b = std::min(offset + length, l.device_offset + l.length);
    if (a < b) covered += b - a;
  }
  return length - std::min(length, covered);
}

std::uint64_t bytes_inside(const std::vector<correlator::LayoutExtent>& layout,
                           std::uint64_t offset, std::uint64_t length) {
  return length - bytes_outside(layout, offset, length);
}

// Where a vdisk offset really is, from the ground-truth layout (sorted by logical offset).
std::optional<std::uint64_t> true_device_offset(const std::vector<correlator::LayoutExtent>& layout,
                                                std::uint64_t voffset) {
  for (const auto& l : layout) {
    if (l.logical <= voffset && voffset < l.logical + l.length) {
      return l.device_offset + (voffset - l.logical);
    }
  }
  return std::nullopt;
}

class OpaqueChainTest : public ::testing::TestWithParam<ChainCase> {
 protected:
  void SetUp() override {
    V2P_REQUIRE_ROOT("loop devices, eBPF");
    V2P_REQUIRE_BTF();
    for (const std::string& tool :
         {"mkfs." + GetParam().fs, std::string("qemu-storage-daemon"), std::string("qemu-img"),
          std::string("qemu-io"), std::string("fio")}) {
      V2P_REQUIRE_TOOLS(tool);
    }
    dir_ = std::filesystem::path("/var/tmp") / ("v2p-opaque-test." + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::filesystem::path dir_;
};

TEST_P(OpaqueChainTest, ConfidenceIsHonestAndNothingElseIsAttributed) {
  const auto& param = GetParam();
  // Declared in this order so they are undone in reverse on every exit path: the chain (probe
  // links, export, upstream connections), then the daemons, then the file system.
  LoopFilesystem fs({dir_ / "host.img", dir_ / "mnt", 512ULL << 20, param.fs, true});
  const auto qcow2 = fs.mountpoint() / "vm1-disk0.qcow2";
  const auto raw = fs.mountpoint() / "vm2-disk0.raw";
  const auto noise_file = fs.mountpoint() / "neighbour.dat";
  const bool btrfs = param.fs == "btrfs";
  // On btrfs, NOCOW as libvirt creates images there: otherwise the daemon's O_DIRECT writes
  // become buffered (data checksums) and reach the disk from writeback threads, not the daemon.
  run_checked({"qemu-img", "create", "-q", "-f", "qcow2", "-o",
               btrfs ? "cluster_size=65536,nocow=on" : "cluster_size=65536", qcow2.string(),
               "64M"});
  create_sparse_image(raw, 64ULL << 20, btrfs);
  const auto upstream_sock = dir_ / "qsd.sock";
  ChildProcess qsd(
      {"qemu-storage-daemon", "--blockdev",
       "driver=file,node-name=file0,filename=" + qcow2.string() + ",cache.direct=on,aio=io_uring",
       "--blockdev", "driver=qcow2,node-name=fmt0,file=file0", "--nbd-server",
       "addr.type=unix,addr.path=" + upstream_sock.string(), "--export",
       "type=nbd,id=e0,node-name=fmt0,name=disk0,writable=on"});
  for (int i = 0; i < 1000 && !std::filesystem::exists(upstream_sock) && !qsd.exited(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(std::filesystem::exists(upstream_sock)) << "qemu-storage-daemon did not start";

  vfilter::VdiskConfig opaque;
  opaque.vm = "vm1";
  opaque.vdisk = "disk0";
  opaque.image = qcow2;  // what verification compares against
  opaque.upstream = "nbd+unix:///disk0?socket=" + upstream_sock.string();
  auto tagged = vfilter::image_vdisk("vm2", "disk1", raw);
  const auto sock = dir_ / "v2p.sock";
  cli::LiveChain chain_object({{fs.device()}, {opaque, tagged}, sock});
  cli::LiveChain* chain = &chain_object;

  std::vector<correlator::WindowDecision> decisions;
  chain->set_window_observer([&](const correlator::WindowDecision& d) { decisions.push_back(d); });

  // A neighbour writing O_DIRECT on the same file system the whole time, untagged.
  ChildProcess neighbour({"fio", "--name=neighbour", "--ioengine=psync", "--direct=1",
                          "--rw=randwrite", "--bs=4k", "--size=4M", "--time_based", "--runtime=600",
                          "--filename=" + noise_file.string()});
  // Laid out and writing before the VMs start.
  for (int i = 0; i < 600 && !neighbour.exited(); ++i) {
    std::error_code ec;
    if (std::filesystem::file_size(noise_file, ec) == (4u << 20) && i > 20) break;
    chain->pump(10);
  }
  ASSERT_FALSE(neighbour.exited()) << "the neighbour's fio stopped";
  const std::string base = "nbd+unix:///{}?socket=" + sock.string();
  ChildProcess vm1(workload_command(param.workload, fmt::format(fmt::runtime(base), "disk0")));
  ChildProcess vm2(workload_command(param.workload, fmt::format(fmt::runtime(base), "disk1")));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  while (!(vm1.exited() && vm2.exited()) && std::chrono::steady_clock::now() < deadline) {
    chain->pump(50);
  }
  std::string out1, out2;
  for (const auto& l : vm1.read_lines()) out1 += l + "\n";
  for (const auto& l : vm2.read_lines()) out2 += l + "\n";
  ASSERT_TRUE(vm1.exited() && vm2.exited()) << "workload did not finish in time";
  ASSERT_EQ(vm1.exit_code(), 0) << out1;
  ASSERT_EQ(vm2.exit_code(), 0) << out2;
  neighbour.terminate(SIGTERM);
  while (!neighbour.exited()) chain->pump(50);
  chain->settle();

  const auto& corr = chain->correlator();
  const auto stats = corr.stats();
  EXPECT_EQ(stats.lost_events, 0u);
  EXPECT_EQ(corr.backend_processes(),
            std::vector<std::uint32_t>{static_cast<std::uint32_t>(qsd.pid())})
      << "the vfilter did not declare the daemon";
  EXPECT_GT(stats.joined_window, 0u);
  EXPECT_GT(stats.joined_exact, 0u);
  VdiskKey key_opaque{}, key_tagged{};
  for (const auto& d : corr.vdisk_declarations()) {
    const VdiskKey k{VmId{d.vm_id}, VdiskId{d.vdisk_id}};
    if (d.vm_name == "vm1") {
      key_opaque = k;
    } else {
      key_tagged = k;
    }
  }

  // Ground truth once the daemon has written its tables out and let go of the image.
  qsd.terminate(SIGTERM);
  for (int i = 0; i < 1000 && !qsd.exited(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(qsd.exited());
  const auto truth = correlator::image_layout(qcow2);
  const auto qcow2_file = correlator::file_layout(qcow2);
  const auto neighbour_file = correlator::file_layout(noise_file);
  const auto raw_file = correlator::file_layout(raw);
  const auto& map = corr.map();

  // Bytes: the map's claim next to the truth, overall and for what it is certain about.
  const auto report = correlator::verify_against_layout(map, key_opaque, truth, fs.device());
  const auto& certain = report.buckets.front();
  // Decisions: each window assignment is right when the place it gave the bio is where the
  // vdisk offset really is (qcow2 never moves a cluster once allocated, without snapshots).
  std::uint64_t n_certain = 0, right_certain = 0, n_all = 0, right_all = 0;
  double conf_sum = 0, conf_var = 0;
  for (const auto& d : decisions) {
    if (d.vdisk != key_opaque) continue;
    const auto want = true_device_offset(truth, d.mapping.voffset.value());
    const bool right =
        want && d.mapping.device == fs.device() && *want == d.mapping.sector.value() * kSectorSize;
    ++n_all;
    right_all += right ? 1 : 0;
    conf_sum += d.confidence;
    conf_var += d.confidence * (1.0 - d.confidence);
    if (d.confidence >= 0.99f) {
      ++n_certain;
      right_certain += right ? 1 : 0;
    }
  }
  std::uint64_t foreign = 0, in_neighbour = 0, in_raw = 0;
  for (const auto& e : map.extents(key_opaque)) {
    const std::uint64_t off = e.sector.value() * kSectorSize;
    foreign += e.device == fs.device() ? bytes_outside(qcow2_file, off, e.length) : e.length;
    in_neighbour += bytes_inside(neighbour_file, off, e.length);
    in_raw += bytes_inside(raw_file, off, e.length);
  }
  std::cout << fmt::format(
      "opaque {} {}: observed {} B, accuracy {:.4f}, mean confidence {:.4f}; confidence>=0.99: "
      "{} B, accuracy {:.4f}; decisions {} (right {}, expected {:.1f}), certain {} (right {}); "
      "unattributed {}, metadata {}, unplaced {}\n",
      param.fs, param.workload, report.bytes_observed, report.accuracy(), report.mean_confidence(),
      certain.bytes_observed, certain.accuracy(), n_all, right_all, conf_sum, n_certain,
      right_certain, stats.unattributed, stats.metadata, stats.unplaced_window);
  for (const auto& m : report.mismatches) std::cout << "  mismatch: " << m << "\n";

  ASSERT_GT(report.bytes_observed, 0u) << "nothing of the qcow2 vdisk was mapped";
  ASSERT_GT(n_all, 0u);
  EXPECT_EQ(foreign, 0u) << "bytes outside the qcow2 file were attributed to the VM";
  EXPECT_EQ(in_neighbour, 0u) << "the neighbour's writes were attributed to the VM";
  EXPECT_EQ(in_raw, 0u) << "the tagged vdisk's blocks were attributed to the opaque one";
  // Certain means right: at least 99% of the bytes at confidence >= 0.99 in the final map, and
  // of the decisions made at that confidence at least 99% less 4 standard deviations (a 0.99
  // bucket of 31 decisions has one wrong 27% of the time: an exact 99% bound was flaky in CI,
  // once 30 of 31 at QD32 on ext4).
  if (certain.bytes_observed > 0) {
    EXPECT_GE(certain.accuracy(), 0.99);
  }
  if (n_certain > 0) {
    const double n = double(n_certain);
    EXPECT_GE(double(right_certain), 0.99 * n - 4.0 * std::sqrt(n * 0.99 * 0.01));
  }
  // Never more confident than right: the right decisions are at least what the confidences
  // promise, less 4 standard deviations of that sum (Bernoulli) and 1% slack.
  EXPECT_GE(double(right_all), conf_sum - 4.0 * std::sqrt(conf_var) - 0.01 * double(n_all));
  // Bytes: the accuracy is at least the claimed mean confidence, less 2 points.
  EXPECT_GE(report.accuracy(), report.mean_confidence() - 0.02);
  if (param.workload == "fio-qd1") {
    // One 4 KiB request at a time, one bio each: almost everything is certain. (The few that
    // are not had a qcow2 table write of their size in their window.)
    EXPECT_GE(double(certain.bytes_observed), 0.9 * double(report.bytes_observed));
  }

  // The tagged vdisk next to it, on the same host at the same time: exact.
  const auto tagged_report = correlator::verify_against_fiemap(map, key_tagged, raw, fs.device());
  EXPECT_GT(tagged_report.bytes_observed, 0u);
  EXPECT_EQ(tagged_report.bytes_wrong, 0u)
      << (tagged_report.mismatches.empty() ? "" : tagged_report.mismatches[0]);
  EXPECT_DOUBLE_EQ(tagged_report.accuracy(), 1.0);
  EXPECT_DOUBLE_EQ(tagged_report.mean_confidence(), 1.0);
}

INSTANTIATE_TEST_SUITE_P(
    FileSystems, OpaqueChainTest,
    ::testing::Values(ChainCase{"ext4", "qemu-io"}, ChainCase{"ext4", "fio-qd1"},
                      ChainCase{"ext4", "fio-qd32"}, ChainCase{"xfs", "qemu-io"},
                      ChainCase{"xfs", "fio-qd1"}, ChainCase{"xfs", "fio-qd32"},
                      ChainCase{"btrfs", "qemu-io"}, ChainCase{"btrfs", "fio-qd1"},
                      ChainCase{"btrfs", "fio-qd32"}),
    case_name);

}  // namespace
}  // namespace v2p
