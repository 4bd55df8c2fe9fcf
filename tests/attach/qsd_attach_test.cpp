// Passive attach to an unmodified qemu-storage-daemon serving a qcow2 image (root, BTF): the
// map recovered from uprobes + syscall windows + bios against `qemu-img map` composed with
// FIEMAP, per host file system and queue depth; the one-line refusals; and teardown that leaves
// no uprobe behind, also when the traced process dies.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <tuple>

#include "cli/attach_session.hpp"
#include "common/error.hpp"
#include "correlator/verify.hpp"
#include "pfilter/qemu_attach.hpp"
#include "tests/attach/attach_fixture.hpp"

namespace v2p::test {
namespace {

#define V2P_REQUIRE_ROOT_AND_BTF() \
  do {                             \
    V2P_REQUIRE_ROOT("uprobes");   \
    V2P_REQUIRE_BTF();             \
  } while (0)

std::string error_of(pid_t pid) {
  try {
    pfilter::QemuAttach::attach(pid);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(AttachRefuses, ANonexistentProcess) {
  V2P_REQUIRE_ROOT_AND_BTF();
  EXPECT_EQ(error_of(0x3ffffff), "passive attach: no process 67108863");
}

TEST(AttachRefuses, AProgramWithoutQemuBlockSymbols) {
  V2P_REQUIRE_ROOT_AND_BTF();
  ChildProcess sleeper({"sleep", "30"});
  const auto e = error_of(sleeper.pid());
  EXPECT_NE(e.find("does not export bdrv_co_preadv_part, bdrv_co_pwritev_part"), std::string::npos)
      << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << "one line: " << e;
  EXPECT_EQ(own_perf_attachments(), "");
}

TEST(AttachRefuses, AnUnprivilegedCaller) {
  V2P_REQUIRE_ROOT_AND_BTF();
  V2P_REQUIRE_TOOLS("setpriv");
  ChildProcess sleeper({"sleep", "30"});
  const auto v2p = fs::path(V2P_CLI_PATH);
  const auto r = run_command({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              v2p.string(), "attach", "--pid", std::to_string(sleeper.pid())});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("root"), std::string::npos) << r.err;
}

void map_qcow2_behind_qsd(const std::string& fs_type, int qd, const std::string& aio) {
  AttachScratch scratch;
  LoopFilesystem host(
      {scratch.path() / "host.img", scratch.path() / "mnt", 512ULL << 20, fs_type, true});
  const auto image = host.mountpoint() / "vm.qcow2";
  run_checked({"qemu-img", "create", "-q", "-f", "qcow2", image.string(), "64M"});
  QsdExport qsd(image, scratch.path() / "nbd.sock", aio);

  {
    cli::AttachSession session({{qsd.pid()}, "vm1", {}});
    EXPECT_NE(own_perf_attachments(), "") << "attached, so bpftool must list the uprobes";
    const auto run_fio = [&](const std::string& rw, const std::string& size) {
      ChildProcess fio({"fio", "--name=w", "--ioengine=nbd", "--uri=" + qsd.uri(), "--rw=" + rw,
                        "--bs=4k", "--iodepth=" + std::to_string(qd), "--size=64M",
                        "--io_size=" + size, "--randseed=7", "--output=/dev/null"});
      while (!fio.exited()) session.pump(20);
      ASSERT_EQ(fio.exit_code(), 0) << rw;
    };
    run_fio("randwrite", qd == 1 ? "4M" : "12M");
    run_fio("randread", "4M");
    // qsd keeps qcow2's L2 updates in its cache until a flush or its exit: stop it so that
    // `qemu-img map` (the ground truth) reads what the guest data's clusters really are.
    qsd.process().terminate(SIGTERM);
    while (!qsd.process().exited()) session.pump(20);
    session.settle();

    const auto& corr = session.correlator();
    const auto decls = corr.vdisk_declarations();
    ASSERT_EQ(decls.size(), 1u);
    EXPECT_EQ(decls[0].image_path, image.string());
    const VdiskKey key{VmId{decls[0].vm_id}, VdiskId{decls[0].vdisk_id}};
    const auto report = correlator::verify_against_fiemap(corr.map(), key, image, host.device());
    const auto& j = session.join_stats();
    const auto meta = j.metadata_bytes.contains(key) ? j.metadata_bytes.at(key) : 0;
    // One line per run, for the accuracy table in docs/attach.md.
    fmt::print(
        "ACCURACY qsd aio={} {} QD{}: observed {} right {} wrong {} accuracy {:.4f} "
        "confidence {:.4f} coverage {:.4f} metadata {} unattributed {}\n",
        aio, fs_type, qd, report.bytes_observed, report.bytes_right, report.bytes_wrong,
        report.accuracy(), report.mean_confidence(), report.coverage(), meta, j.unattributed_bytes);
    // Random 4 KiB writes land on distinct blocks mostly: most of what fio wrote is mapped. Under
    // aio=io_uring the requests io_uring punts to its io-wq workers (their bios come from another
    // thread, outside the submit window) are left unattributed, never guessed: less is placed.
    EXPECT_GE(report.bytes_observed, (aio == "io_uring" ? 4u : qd == 1 ? 3u : 10u) << 20);
    EXPECT_GE(report.accuracy(), 0.99) << [&] {
      std::string m;
      for (const auto& x : report.mismatches) m += x + "\n";
      return m;
    }();
    EXPECT_NEAR(report.mean_confidence(), report.accuracy(), 0.01) << "calibrated confidence";
    EXPECT_GT(meta, 0u) << "qcow2 allocation is metadata of the vdisk";
    EXPECT_EQ(session.lost_events(), 0u);
  }
  EXPECT_EQ(own_perf_attachments(), "") << "detach must leave no uprobe";
}

class QsdAttach : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(QsdAttach, MapsQcow2GuestDataExactly) {
  V2P_REQUIRE_ROOT_AND_BTF();
  const auto [fs_type, qd] = GetParam();
  V2P_REQUIRE_TOOLS("mkfs." + fs_type, "qemu-img", "qemu-storage-daemon", "fio", "bpftool");
  map_qcow2_behind_qsd(fs_type, qd, "threads");
}

// aio=io_uring and aio=native: the bios come from the main loop inside the submit syscall.
class QsdAttachAio : public ::testing::TestWithParam<std::string> {};

TEST_P(QsdAttachAio, MapsQcow2GuestDataExactlyAtQd32OnExt4) {
  V2P_REQUIRE_ROOT_AND_BTF();
  V2P_REQUIRE_TOOLS("mkfs.ext4", "qemu-img", "qemu-storage-daemon", "fio", "bpftool");
  map_qcow2_behind_qsd("ext4", 32, GetParam());
}

INSTANTIATE_TEST_SUITE_P(Aio, QsdAttachAio, ::testing::Values("io_uring", "native"));

INSTANTIATE_TEST_SUITE_P(FsAndQueueDepth, QsdAttach,
                         ::testing::Combine(::testing::Values("ext4", "xfs", "btrfs"),
                                            ::testing::Values(1, 32)),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_QD" +
                                  std::to_string(std::get<1>(info.param));
                         });

// The subcommand end to end: `v2p attach --record` writes a stream `v2p verify` accepts, and
// exits by itself (detached) when the traced daemon does.
TEST(AttachCli, RecordsAStreamThatVerifies) {
  V2P_REQUIRE_ROOT_AND_BTF();
  V2P_REQUIRE_TOOLS("mkfs.ext4", "qemu-img", "qemu-storage-daemon", "fio");
  AttachScratch scratch;
  LoopFilesystem host(
      {scratch.path() / "host.img", scratch.path() / "mnt", 256ULL << 20, "ext4", true});
  const auto image = host.mountpoint() / "vm.qcow2";
  const auto stream = scratch.path() / "attach.v2ps";
  run_checked({"qemu-img", "create", "-q", "-f", "qcow2", image.string(), "32M"});
  QsdExport qsd(image, scratch.path() / "nbd.sock");
  ChildProcess attach({V2P_CLI_PATH, "attach", "--pid", std::to_string(qsd.pid()), "--vm", "vm1",
                       "--record", stream.string()});
  std::string out;
  for (int i = 0; i < 400 && out.find("attached") == std::string::npos && !attach.exited(); ++i) {
    for (const auto& l : attach.read_lines()) out += l + "\n";
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ASSERT_NE(out.find("attached to"), std::string::npos) << out;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the probe loads after the uprobes
  run_checked({"fio", "--name=w", "--ioengine=nbd", "--uri=" + qsd.uri(), "--rw=randwrite",
               "--bs=4k", "--iodepth=8", "--size=32M", "--io_size=2M", "--output=/dev/null"});
  qsd.process().terminate(SIGTERM);
  for (int i = 0; i < 400 && !attach.exited(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  ASSERT_TRUE(attach.exited()) << "v2p attach must exit when the daemon does";
  for (const auto& l : attach.read_lines()) out += l + "\n";
  EXPECT_EQ(attach.exit_code(), 0) << out;
  EXPECT_NE(out.find("process exited; detached"), std::string::npos) << out;
  const auto v = run_command({V2P_CLI_PATH, "verify", "--image", image.string(), "--device",
                              host.loop_device(), "--stream", stream.string()});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  EXPECT_NE(v.out.find("accuracy 100.00%"), std::string::npos) << v.out;
  EXPECT_EQ(own_perf_attachments(), "");
}

TEST(AttachCli, RefusesANonQemuProcessInOneLine) {
  V2P_REQUIRE_ROOT_AND_BTF();
  ChildProcess sleeper({"sleep", "30"});
  const auto r = run_command({V2P_CLI_PATH, "attach", "--pid", std::to_string(sleeper.pid())});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("does not export bdrv_co_preadv_part"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(QsdAttachTeardown, TheTracedProcessDyingLeavesNoUprobe) {
  V2P_REQUIRE_ROOT_AND_BTF();
  V2P_REQUIRE_TOOLS("qemu-img", "qemu-storage-daemon", "bpftool");
  AttachScratch scratch;
  const auto image = scratch.path() / "vm.qcow2";
  run_checked({"qemu-img", "create", "-q", "-f", "qcow2", image.string(), "16M"});
  QsdExport qsd(image, scratch.path() / "nbd.sock");
  cli::AttachSession session({{qsd.pid()}, "", {}});
  EXPECT_NE(own_perf_attachments(), "");
  qsd.process().terminate(SIGKILL);
  for (int i = 0; i < 100 && !session.all_exited(); ++i) session.pump(20);
  EXPECT_TRUE(session.all_exited());
  EXPECT_EQ(own_perf_attachments(), "") << "the dead process's uprobes must be gone";
}

}  // namespace
}  // namespace v2p::test
