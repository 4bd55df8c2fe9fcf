// `v2p serve` as a process: readiness, clean shutdown on SIGTERM, durability across kill -9,
// the record file, the config file, and VM identity from the connecting process's command line.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <fstream>

#include "common/record_file.hpp"
#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "test_server.hpp"

namespace v2p::vfilter {
namespace {

using namespace testing;

// The serve tool is `v2p serve` built from the same sources (see CMakeLists.txt).
std::string serve_binary() {
  return V2P_SERVE_TOOL;
}

bool have_python_nbd() {
  return run_command({"env", "PATH=/usr/bin:/bin", "python3", "-c", "import nbd"}).ok();
}

// Children die with the test process even when it aborts (a sanitizer report, a crash), so no
// server or QEMU outlives a failed run. setpriv execs, so the pid stays the child's.
std::vector<std::string> dies_with_parent(std::vector<std::string> argv) {
  static const bool have_setpriv = have_tool("setpriv");
  if (have_setpriv) argv.insert(argv.begin(), {"setpriv", "--pdeathsig", "KILL", "--"});
  return argv;
}

// Starts `v2p serve` with `args` and waits for its ready line.
std::unique_ptr<ChildProcess> start_serve(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {serve_binary(), "serve"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto child = std::make_unique<ChildProcess>(dies_with_parent(argv));
  bool ready = false;
  std::string seen;
  eventually([&] {
    for (const auto& l : child->read_lines()) {
      seen += l + "\n";
      ready = ready || l == "v2p serve: ready";
    }
    return ready || child->exited();
  });
  if (!ready) ADD_FAILURE() << "v2p serve did not become ready:\n" << seen;
  return child;
}

int stop_and_wait(ChildProcess& child, int sig) {
  child.terminate(sig);
  eventually([&] { return child.exited(); });
  return child.exit_code();
}

struct Stream {
  std::vector<VdiskDeclaration> decls;
  std::vector<ContextRecord> records;
};

Stream read_stream(const std::filesystem::path& p) {
  Stream s;
  // Still empty while the writer buffers its header (StreamReader memcpy's from a null pointer
  // for an empty file, which UBSan rejects).
  std::error_code ec;
  if (std::filesystem::file_size(p, ec) == 0 || ec) return s;
  StreamReader reader(p);
  while (auto f = reader.next()) {
    if (f->type == FrameType::kVdiskDeclaration)
      s.decls.push_back(decode_vdisk_declaration(f->payload));
    if (f->type == FrameType::kContextRecord)
      s.records.push_back(decode_fixed<ContextRecord>(f->payload));
  }
  return s;
}

TEST(ServeProcess, SigtermShutsDownCleanlyAndWritesRecords) {
  TempDir dir;
  const auto image = dir.path() / "vm1-disk0.raw";
  const auto sock = dir.path() / "vm1.sock";
  const auto rec = dir.path() / "rec.v2p";
  make_image(image, 8 << 20);
  auto child =
      start_serve({"--image", image.string(), "--vm", "vm1", "--vdisk", "disk0", "--socket",
                   sock.string(), "--socket-mode", "0660", "--record", rec.string()});
  struct stat st {};
  ASSERT_EQ(::stat(sock.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  {
    NbdTestClient c(sock, "disk0");
    ASSERT_EQ(c.write(0, pattern(8192, 31)), 0u);
  }
  EXPECT_EQ(stop_and_wait(*child, SIGTERM), 0);
  EXPECT_FALSE(std::filesystem::exists(sock));
  const auto s = read_stream(rec);
  ASSERT_EQ(s.decls.size(), 1u);
  EXPECT_EQ(s.decls[0].vm_name, "vm1");
  EXPECT_EQ(s.decls[0].vdisk_name, "disk0");
  EXPECT_EQ(s.decls[0].image_path, image.string());
  ASSERT_EQ(s.records.size(), 1u);
  EXPECT_EQ(s.records[0].length, 8192u);
  EXPECT_EQ(s.records[0].tgid, static_cast<std::uint32_t>(child->pid()));
  EXPECT_NE(s.records[0].slot, 0);
}

TEST(ServeProcess, FuaAndFlushedDataSurviveKill9) {
  if (!have_python_nbd()) V2P_SKIP_MISSING_PACKAGE("nbdsh (python3-libnbd) not installed");
  TempDir dir;
  const auto image = dir.path() / "img.raw";
  const auto sock = dir.path() / "s.sock";
  make_image(image, 8 << 20);
  auto child = start_serve(
      {"--image", image.string(), "--vm", "vm", "--vdisk", "d", "--socket", sock.string()});
  const auto r = run_command({"env", "PATH=/usr/bin:/bin", "nbdsh", "-u",
                              "nbd+unix:///d?socket=" + sock.string(), "-c",
                              "h.pwrite(b'\\xab' * 65536, 0, nbd.CMD_FLAG_FUA)\n"
                              "h.pwrite(b'\\xcd' * 4096, 1048576)\n"
                              "h.flush()\n"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(stop_and_wait(*child, SIGKILL), 128 + SIGKILL);
  EXPECT_EQ(read_file_range(image, 0, 65536), std::vector<std::byte>(65536, std::byte{0xab}));
  EXPECT_EQ(read_file_range(image, 1 << 20, 4096), std::vector<std::byte>(4096, std::byte{0xcd}));
  std::filesystem::remove(sock);  // a killed server cannot remove it; the test does
}

TEST(ServeProcess, KilledServersSocketIsReplacedOnRestart) {
  TempDir dir;
  const auto image = dir.path() / "img.raw";
  const auto sock = dir.path() / "s.sock";
  make_image(image, 1 << 20);
  const std::vector<std::string> args = {"--image", image.string(), "--socket", sock.string()};
  auto first = start_serve(args);
  stop_and_wait(*first, SIGKILL);
  ASSERT_TRUE(std::filesystem::exists(sock));  // stale
  auto second = start_serve(args);
  NbdTestClient c(sock, "img");  // the vdisk (and export) name defaults to the image stem
  EXPECT_EQ(c.size(), 1u << 20);
  c.close();
  EXPECT_EQ(stop_and_wait(*second, SIGINT), 0);
}

TEST(ServeProcess, VmNameFromThePeersCommandLine) {
  if (!have_python_nbd()) V2P_SKIP_MISSING_PACKAGE("python3-libnbd not installed");
  TempDir dir;
  const auto image = dir.path() / "img.raw";
  const auto sock = dir.path() / "s.sock";
  const auto rec = dir.path() / "rec.v2p";
  make_image(image, 1 << 20);
  auto child = start_serve({"--image", image.string(), "--vdisk", "disk0", "--socket",
                            sock.string(), "--record", rec.string()});
  // A client whose command line looks like a libvirt-started QEMU's.
  const auto r = run_command({"env", "PATH=/usr/bin:/bin", "python3", "-c",
                              "import nbd, sys\nh = nbd.NBD()\nh.connect_uri(sys.argv[1])\n"
                              "h.pwrite(bytes(512), 0)\nh.shutdown()\n",
                              "nbd+unix:///disk0?socket=" + sock.string(), "-name",
                              "guest=web1,debug-threads=on"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(stop_and_wait(*child, SIGTERM), 0);
  const auto s = read_stream(rec);
  ASSERT_EQ(s.decls.size(), 1u);
  EXPECT_EQ(s.decls[0].vm_name, "web1");
  ASSERT_EQ(s.records.size(), 1u);
  EXPECT_EQ(s.records[0].vm_id, s.decls[0].vm_id);
}

// Both QEMU command lines of docs/operator-guide.md attach, and the VM is named from -name.
TEST(ServeProcess, QemuAttachesWithTheDocumentedLines) {
  V2P_REQUIRE_TOOLS("qemu-system-x86_64");
  TempDir dir;
  const auto image = dir.path() / "img.raw";
  const auto sock = dir.path() / "vm1.sock";
  make_image(image, 8 << 20);
  const std::vector<std::vector<std::string>> disk_args = {
      {"-blockdev",
       "driver=nbd,node-name=disk0,server.type=unix,server.path=" + sock.string() + ",export=disk0",
       "-device", "virtio-blk-pci,drive=disk0"},
      {"-drive",
       "driver=nbd,server.type=unix,server.path=" + sock.string() + ",export=disk0,if=virtio"}};
  for (std::size_t variant = 0; variant < disk_args.size(); ++variant) {
    SCOPED_TRACE(disk_args[variant][1]);
    const auto rec = dir.path() / ("rec" + std::to_string(variant) + ".v2p");
    auto child = start_serve({"--image", image.string(), "--vdisk", "disk0", "--socket",
                              sock.string(), "--record", rec.string()});
    // -S: QEMU opens its block devices (and so connects) but never runs the guest.
    std::vector<std::string> argv = {"qemu-system-x86_64",
                                     "-accel",
                                     "tcg",
                                     "-name",
                                     "guest=qvm" + std::to_string(variant),
                                     "-S",
                                     "-display",
                                     "none",
                                     "-monitor",
                                     "none",
                                     "-serial",
                                     "none",
                                     "-nodefaults"};
    argv.insert(argv.end(), disk_args[variant].begin(), disk_args[variant].end());
    ChildProcess qemu(dies_with_parent(argv));
    const bool declared = eventually([&] {
      if (qemu.exited()) return true;
      try {
        return !read_stream(rec).decls.empty();
      } catch (const std::exception&) {
        return false;
      }
    });
    ASSERT_TRUE(declared);
    std::string output;
    for (const auto& l : qemu.read_lines()) output += l + "\n";
    ASSERT_FALSE(qemu.exited()) << "qemu exited " << qemu.exit_code() << ":\n" << output;
    EXPECT_EQ(read_stream(rec).decls.at(0).vm_name, "qvm" + std::to_string(variant));
    qemu.terminate(SIGKILL);
    eventually([&] { return qemu.exited(); });
    EXPECT_EQ(stop_and_wait(*child, SIGTERM), 0);
  }
}

TEST(ServeProcess, ConfigFileWithTwoVms) {
  V2P_REQUIRE_TOOLS("nbdinfo");
  TempDir dir;
  make_image(dir.path() / "a.raw", 1 << 20);
  make_image(dir.path() / "b.raw", 2 << 20);
  const auto cfg = dir.path() / "v2p.json";
  std::ofstream(cfg) << R"({
    "socket": "s.sock",
    "vms": [ {"name": "vm1", "vdisks": [ {"name": "disk0", "image": "a.raw", "export": "vm1-disk0"} ]},
             {"name": "vm2", "vdisks": [ {"name": "disk0", "image": "b.raw", "export": "vm2-disk0",
                                          "read_only": true} ]} ] })";
  auto child = start_serve({"--config", cfg.string()});
  const auto sock = dir.path() / "s.sock";
  const auto r = run_command({"nbdinfo", "--list", "nbd+unix:///?socket=" + sock.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("export=\"vm1-disk0\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("export=\"vm2-disk0\""), std::string::npos) << r.out;
  NbdTestClient ro(sock, "vm2-disk0");
  EXPECT_EQ(ro.size(), 2u << 20);
  EXPECT_EQ(ro.write(0, pattern(512, 1)), nbd::kEperm);
  ro.close();
  EXPECT_EQ(stop_and_wait(*child, SIGTERM), 0);
}

TEST(ServeProcess, BadFlagsFailWithASentence) {
  const auto r = run_command({serve_binary(), "serve", "--socket", "/nonexistent/dir/s.sock",
                              "--image", "/nonexistent/img.raw"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("qemu-img create"), std::string::npos) << r.err;
  const auto r2 = run_command({serve_binary(), "serve", "--image", "/etc/hostname"});
  EXPECT_EQ(r2.exit_code, 1);
  EXPECT_NE(r2.err.find("no listener"), std::string::npos) << r2.err;
}

}  // namespace
}  // namespace v2p::vfilter
