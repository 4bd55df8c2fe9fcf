// Passive attach to an unmodified qemu-system-x86_64 (root, BTF, QEMU, the test guest): one TCG
// guest with six qcow2 disks, two on each of ext4, xfs and btrfs, written and read by the guest
// at queue depth 1 on the first of each pair and 32 on the second. Each vdisk's map, recovered by
// uprobes alone, is checked against `qemu-img map` composed with FIEMAP.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "cli/attach_session.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "correlator/verify.hpp"
#include "tests/attach/attach_fixture.hpp"

namespace v2p::test {
namespace {

const fs::path kGuest = "/var/cache/v2p/guest";

// The guest starts paused (-S) so the uprobes are in place before its first I/O; "cont" on the
// human monitor starts it.
void monitor_command(const fs::path& socket, const std::string& command) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", socket.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    throw system_error("cannot connect to the QEMU monitor");
  }
  const std::string line = command + "\n";
  const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::usleep(200'000);  // let the monitor read it before the connection closes
  ::close(fd);
  if (!ok) throw system_error("cannot write to the QEMU monitor");
}

// The project's test initramfs with this test's init appended (a later cpio archive's files
// replace the earlier ones').
fs::path attach_initrd(const fs::path& dir) {
  const auto root = dir / "initroot";
  fs::create_directories(root / "bin");
  fs::copy_file(fs::path(V2P_ATTACH_GUEST_INIT), root / "init");
  for (const char* tool : {"tr", "cut"}) fs::create_symlink("busybox", root / "bin" / tool);
  const auto extra = dir / "extra.cpio.gz";
  run_checked({"sh", "-c",
               "cd '" + root.string() + "' && find . | cpio -o -H newc --quiet | gzip -1 > '" +
                   extra.string() + "'"});
  const auto initrd = dir / "initrd.img";
  run_checked({"sh", "-c",
               "cat '" + (kGuest / "initrd.img").string() + "' '" + extra.string() + "' > '" +
                   initrd.string() + "'"});
  return initrd;
}

TEST(GuestAttach, Qcow2OnExt4XfsBtrfsAtQd1AndQd32) {
  V2P_REQUIRE_ROOT("uprobes");
  V2P_REQUIRE_BTF();
  V2P_REQUIRE_TOOLS("qemu-system-x86_64", "qemu-img", "cpio", "gzip", "mkfs.ext4", "mkfs.xfs",
                    "mkfs.btrfs", "bpftool");
  if (!fs::exists(kGuest / "initrd.img"))
    V2P_SKIP_MISSING_PACKAGE("needs the test guest (scripts/setup.sh builds it)");
  AttachScratch scratch;
  const std::array<std::string, 3> fs_types = {"ext4", "xfs", "btrfs"};
  std::vector<std::unique_ptr<LoopFilesystem>> hosts;
  struct Disk {
    fs::path image;
    DeviceId device;
    std::string fs_type;
    int qd = 1;
  };
  std::vector<Disk> disks;
  for (const auto& t : fs_types) {
    hosts.push_back(std::make_unique<LoopFilesystem>(LoopFilesystem::Options{
        scratch.path() / (t + ".img"), scratch.path() / t, 512ULL << 20, t, true}));
    for (const int qd : {1, 32}) {
      Disk d{hosts.back()->mountpoint() / fmt::format("{}-qd{}.qcow2", t, qd),
             hosts.back()->device(), t, qd};
      run_checked({"qemu-img", "create", "-q", "-f", "qcow2", d.image.string(), "64M"});
      disks.push_back(d);
    }
  }
  const auto initrd = attach_initrd(scratch.path());
  const auto monitor = scratch.path() / "monitor.sock";
  std::vector<std::string> argv = {
      "qemu-system-x86_64",
      "-accel",
      "tcg",
      "-m",
      "256",
      "-nographic",
      "-no-reboot",
      "-S",
      "-monitor",
      "unix:" + monitor.string() + ",server=on,wait=off",
      "-kernel",
      (kGuest / "vmlinuz").string(),
      "-initrd",
      initrd.string(),
      "-append",
      "console=ttyS0 panic=-1 quiet v2p.qd=1,32,1,32,1,32 v2p.writes=256"};
  for (const auto& d : disks) {
    argv.push_back("-drive");
    argv.push_back("file=" + d.image.string() + ",format=qcow2,if=virtio,cache=none,aio=threads");
  }
  ChildProcess qemu(argv);
  ASSERT_TRUE(wait_for_socket(monitor, qemu)) << "QEMU did not start";

  std::vector<std::string> console;
  {
    cli::AttachSession session({{qemu.pid()}, "guest1", {}});
    monitor_command(monitor, "cont");
    const auto deadline = monotonic_ns() + 400'000'000'000ULL;
    while (!qemu.exited() && monotonic_ns() < deadline) {
      session.pump(50);
      for (auto& l : qemu.read_lines()) console.push_back(std::move(l));
    }
    for (auto& l : qemu.read_lines()) console.push_back(std::move(l));
    ASSERT_TRUE(qemu.exited()) << "guest did not finish in time";
    session.settle();
    std::string all;
    for (const auto& l : console) all += l + "\n";
    ASSERT_NE(all.find("V2P-ATTACH-DONE"), std::string::npos) << all;

    const auto& corr = session.correlator();
    const auto& j = session.join_stats();
    const auto decls = corr.vdisk_declarations();
    ASSERT_EQ(decls.size(), disks.size());
    for (const auto& d : disks) {
      SCOPED_TRACE(d.image.string());
      const auto decl = std::find_if(decls.begin(), decls.end(), [&](const auto& x) {
        return x.image_path == d.image.string();
      });
      ASSERT_NE(decl, decls.end());
      const VdiskKey key{VmId{decl->vm_id}, VdiskId{decl->vdisk_id}};
      const auto r = correlator::verify_against_fiemap(corr.map(), key, d.image, d.device);
      const auto meta = j.metadata_bytes.contains(key) ? j.metadata_bytes.at(key) : 0;
      fmt::print(
          "ACCURACY guest {} QD{}: observed {} right {} wrong {} accuracy {:.4f} "
          "confidence {:.4f} coverage {:.4f} metadata {}\n",
          d.fs_type, d.qd, r.bytes_observed, r.bytes_right, r.bytes_wrong, r.accuracy(),
          r.mean_confidence(), r.coverage(), meta);
      // 256 writes of 8 KiB at random places (some repeat): well over 1 MiB placed.
      EXPECT_GE(r.bytes_observed, 1u << 20);
      EXPECT_GE(r.accuracy(), 0.99) << [&] {
        std::string m;
        for (const auto& x : r.mismatches) m += x + "\n";
        return m;
      }();
      EXPECT_NEAR(r.mean_confidence(), r.accuracy(), 0.01) << "calibrated confidence";
      EXPECT_GT(meta, 0u) << "qcow2 allocation is metadata of the vdisk";
    }
    fmt::print("unattributed {} bytes, lost events {}\n", j.unattributed_bytes,
               session.lost_events());
    EXPECT_EQ(session.lost_events(), 0u);
  }
  EXPECT_EQ(own_perf_attachments(), "") << "detach must leave no uprobe";
}

}  // namespace
}  // namespace v2p::test
