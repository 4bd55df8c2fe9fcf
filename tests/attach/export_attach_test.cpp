// qcow2 behind qemu-storage-daemon behind a v2p export (the opaque path), with the daemon
// passively attached (root, BTF, QEMU): the exact join replaces the window join for that vdisk.
// fio drives the v2p export at QD32; the vdisk's map is checked against `qemu-img map` composed
// with FIEMAP.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <signal.h>

#include "cli/live_chain.hpp"
#include "correlator/verify.hpp"
#include "tests/attach/attach_fixture.hpp"

namespace v2p::test {
namespace {

TEST(ExportAttach, ExactJoinReplacesTheWindowJoinBehindQsd) {
  V2P_REQUIRE_ROOT("uprobes");
  V2P_REQUIRE_BTF();
  V2P_REQUIRE_TOOLS("mkfs.ext4", "qemu-img", "qemu-storage-daemon", "fio", "bpftool");
  AttachScratch scratch;
  LoopFilesystem host(
      {scratch.path() / "host.img", scratch.path() / "mnt", 512ULL << 20, "ext4", true});
  const auto image = host.mountpoint() / "vm1-disk0.qcow2";
  run_checked({"qemu-img", "create", "-q", "-f", "qcow2", image.string(), "64M"});
  QsdExport qsd(image, scratch.path() / "qsd.sock");

  vfilter::VdiskConfig opaque;
  opaque.vm = "vm1";
  opaque.vdisk = "disk0";
  opaque.image = image;
  opaque.upstream = qsd.uri();
  std::uint64_t window_decisions = 0;
  {
    cli::LiveChainOptions o{{host.device()}, {opaque}, scratch.path() / "v2p.sock"};
    o.attach_pids = {qsd.pid()};
    cli::LiveChain chain(o);
    chain.set_window_observer([&](const correlator::WindowDecision&) { ++window_decisions; });
    const auto uri = "nbd+unix:///disk0?socket=" + (scratch.path() / "v2p.sock").string();
    for (const auto& [rw, size] : {std::pair{"randwrite", "12M"}, std::pair{"randread", "4M"}}) {
      ChildProcess fio({"fio", "--name=w", "--ioengine=nbd", "--uri=" + uri,
                        std::string("--rw=") + rw, "--bs=4k", "--iodepth=32", "--size=64M",
                        std::string("--io_size=") + size, "--randseed=7", "--output=/dev/null"});
      while (!fio.exited()) chain.pump(20);
      ASSERT_EQ(fio.exit_code(), 0) << rw;
    }
    qsd.process().terminate(SIGTERM);  // flushes qcow2's tables for the ground truth
    while (!qsd.process().exited()) chain.pump(20);
    chain.settle();

    const auto& corr = chain.correlator();
    VdiskKey key{};
    for (const auto& d : corr.vdisk_declarations())
      if (d.vm_name == "vm1") key = {VmId{d.vm_id}, VdiskId{d.vdisk_id}};
    ASSERT_EQ(corr.vdisk_declarations().size(), 1u) << "attach reuses the export's vdisk";
    const auto r = correlator::verify_against_fiemap(corr.map(), key, image, host.device());
    const auto st = corr.stats();
    fmt::print(
        "ACCURACY export+qsd ext4 QD32: observed {} right {} wrong {} accuracy {:.4f} "
        "confidence {:.4f} exact bios {} window bios {} window decisions {}\n",
        r.bytes_observed, r.bytes_right, r.bytes_wrong, r.accuracy(), r.mean_confidence(),
        st.joined_exact, st.joined_window, window_decisions);
    EXPECT_GE(r.bytes_observed, 10u << 20);
    EXPECT_GE(r.accuracy(), 0.99);
    EXPECT_NEAR(r.mean_confidence(), r.accuracy(), 0.01);
    EXPECT_GT(st.joined_exact, 0u);
    EXPECT_EQ(st.joined_window, 0u) << "no bio of the attached daemon is left to the window join";
    ASSERT_NE(chain.attach(), nullptr);
  }
  EXPECT_EQ(own_perf_attachments(), "");
}

}  // namespace
}  // namespace v2p::test
