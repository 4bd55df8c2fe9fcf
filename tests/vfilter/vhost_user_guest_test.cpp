// A real QEMU (TCG) guest on the vhost-user-blk export: QEMU shares its memory
// (memory-backend-memfd,share=on) and attaches vhost-user-blk-pci; the guest's init writes and
// reads back two regions through /dev/vda. The records must cover exactly those regions,
// tagged, and the image must hold data exactly there. A QEMU killed mid-run leaves the export
// serving the next one.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <thread>

#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "test_server.hpp"

namespace v2p::vfilter {
namespace {

using namespace testing;

const std::filesystem::path kGuest = "/var/cache/v2p/guest";

// With a monitor socket, QEMU resets instead of exiting on a reset (no -no-reboot).
std::vector<std::string> qemu_argv(const std::filesystem::path& socket,
                                   const std::filesystem::path& monitor = {}) {
  std::vector<std::string> argv = {"qemu-system-x86_64",
                                   "-accel",
                                   "tcg",
                                   "-m",
                                   "256",
                                   "-object",
                                   "memory-backend-memfd,id=mem,size=256M,share=on",
                                   "-machine",
                                   "memory-backend=mem",
                                   "-nographic",
                                   "-no-reboot",
                                   "-kernel",
                                   (kGuest / "vmlinuz").string(),
                                   "-initrd",
                                   (kGuest / "initrd.img").string(),
                                   "-append",
                                   "console=ttyS0 panic=-1 v2p.mib=8 v2p.chunks=2",
                                   "-chardev",
                                   "socket,id=vu,path=" + socket.string(),
                                   "-device",
                                   "vhost-user-blk-pci,chardev=vu,num-queues=2"};
  if (!monitor.empty()) {
    std::erase(argv, std::string("-no-reboot"));
    argv.insert(argv.end(), {"-monitor", "unix:" + monitor.string() + ",server=on,wait=off"});
  }
  return argv;
}

// Sends one HMP command to QEMU's monitor socket.
bool monitor_command(const std::filesystem::path& monitor, const std::string& cmd) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, monitor.c_str(), sizeof addr.sun_path - 1);
  bool ok = fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  const std::string line = cmd + "\n";
  ok = ok && ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let QEMU read it
  if (fd >= 0) ::close(fd);
  return ok;
}

// Runs the guest until `until` appears (or it exits); returns everything it printed.
std::string run_guest(ChildProcess& qemu, const std::string& until) {
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(240);
  while (std::chrono::steady_clock::now() < deadline) {
    for (const auto& l : qemu.read_lines()) out += l + "\n";
    if (out.find(until) != std::string::npos || qemu.exited()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (const auto& l : qemu.read_lines()) out += l + "\n";
  return out;
}

struct Served {
  Served() {
    image = dir.path() / "disk0.raw";
    socket = dir.path() / "vhost.sock";
    make_image(image, 64 << 20);
    ServerConfig c;
    c.vdisks = {image_vdisk("guestvm", "disk0", image)};
    c.vhost_user_socket = socket;
    server = Server::start(c, &sink);
  }
  TempDir dir;
  std::filesystem::path image;
  std::filesystem::path socket;
  QueueSink sink;
  std::unique_ptr<Server> server;
};

TEST(VhostUserGuest, GuestWritesAndReadsAndTheNextQemuIsServed) {
  V2P_REQUIRE_TOOLS("qemu-system-x86_64");
  if (!std::filesystem::exists(kGuest / "initrd.img")) {
    V2P_SKIP_MISSING_PACKAGE("needs the test guest (scripts/setup.sh builds it)");
  }
  Served s;
  {
    // The first QEMU is killed while its guest is writing.
    ChildProcess qemu(qemu_argv(s.socket));
    const auto out = run_guest(qemu, "V2P-GUEST-PROGRESS region 0");
    ASSERT_NE(out.find("V2P-GUEST-PROGRESS region 0"), std::string::npos) << out;
    qemu.terminate(SIGKILL);
  }
  s.sink.drain();
  ChildProcess qemu(qemu_argv(s.socket));
  const auto out = run_guest(qemu, "V2P-GUEST-OK");
  ASSERT_NE(out.find("V2P-GUEST-OK"), std::string::npos) << out;

  // The guest wrote [0, 4 MiB) and [12 MiB, 16 MiB): the write records cover exactly that,
  // each with a slot, for the VM and vdisk declared.
  std::map<std::uint64_t, std::uint64_t> written;
  std::uint64_t reads = 0;
  for (const auto& r : s.sink.drain()) {
    if (r.op == static_cast<std::uint8_t>(IoOp::kWrite)) {
      EXPECT_NE(r.slot, 0u);
      EXPECT_EQ(r.result, 0);
      written[r.voffset] = r.voffset + r.length;
    } else if (r.op == static_cast<std::uint8_t>(IoOp::kRead)) {
      reads += r.length;
    }
  }
  std::map<std::uint64_t, std::uint64_t> merged;
  for (const auto& [a, b] : written) {
    if (!merged.empty() && std::prev(merged.end())->second >= a) {
      auto& end = std::prev(merged.end())->second;
      end = std::max(end, b);
    } else {
      merged[a] = b;
    }
  }
  const std::map<std::uint64_t, std::uint64_t> want{{0, 4 << 20}, {12 << 20, 16 << 20}};
  EXPECT_EQ(merged, want);
  EXPECT_GE(reads, 8u << 20);  // the guest read both regions back (with O_DIRECT)
  bool vm_declared = false;
  for (const auto& d : s.sink.declarations()) vm_declared |= d.vm_name == "guestvm";
  EXPECT_TRUE(vm_declared);
}

// A guest reset while it writes (QEMU stops the rings, the guest's driver sets them up again)
// reboots onto the same export, which serves the second boot to the end.
TEST(VhostUserGuest, AGuestThatRebootsIsServedAgain) {
  V2P_REQUIRE_TOOLS("qemu-system-x86_64");
  if (!std::filesystem::exists(kGuest / "initrd.img")) {
    V2P_SKIP_MISSING_PACKAGE("needs the test guest (scripts/setup.sh builds it)");
  }
  Served s;
  const auto monitor = s.dir.path() / "monitor.sock";
  ChildProcess qemu(qemu_argv(s.socket, monitor));
  std::string out = run_guest(qemu, "V2P-GUEST-PROGRESS region 0");
  ASSERT_NE(out.find("V2P-GUEST-PROGRESS region 0"), std::string::npos) << out;
  ASSERT_TRUE(monitor_command(monitor, "system_reset"));
  // The first boot never reaches OK (it was reset while writing region 1): an OK is the second.
  out += run_guest(qemu, "V2P-GUEST-OK");
  EXPECT_NE(out.find("V2P-GUEST-OK"), std::string::npos) << out;
  std::size_t boots = 0;
  for (std::size_t at = 0; (at = out.find("V2P-GUEST-PROGRESS region 0", at)) != std::string::npos;
       ++at) {
    ++boots;
  }
  EXPECT_GE(boots, 2u) << out;
}

}  // namespace
}  // namespace v2p::vfilter
