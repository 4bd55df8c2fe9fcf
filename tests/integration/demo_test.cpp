// End-to-end: `v2p demo` as an operator runs it, checked from the outside.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <sys/stat.h>

#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "correlator/snapshot.hpp"

namespace v2p {
namespace {

std::string v2p_binary() {
  const char* b = std::getenv("V2P_BINARY");
  return b ? b : "v2p";
}

#define V2P_REQUIRE_ROOT_AND_BTF()          \
  do {                                      \
    V2P_REQUIRE_ROOT("loop devices, eBPF"); \
    V2P_REQUIRE_BTF();                      \
  } while (0)

int count_v2p_loop_devices() {
  const auto r = run_command({"losetup", "-n", "-O", "BACK-FILE", "--list"});
  int n = 0;
  std::size_t pos = 0;
  while ((pos = r.out.find("v2p-demo", pos)) != std::string::npos) ++n, ++pos;
  return n;
}

// v2p programs loaded right now. Another probe (an operator's `v2p probe`, a benchmark) may
// come and go meanwhile, so the count is compared with the one before the demo, with a grace
// period; what would make a program outlive the demo is a pin, checked exactly.
int count_v2p_bpf_programs() {
  const auto r = run_command({"bpftool", "prog", "show"});
  int n = 0;
  std::size_t pos = 0;
  while ((pos = r.out.find("name v2p", pos)) != std::string::npos) ++n, ++pos;
  return n;
}

std::set<std::string> bpffs_entries() {
  std::set<std::string> entries;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator("/sys/fs/bpf", ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    entries.insert(it->path().string());
  }
  return entries;
}

class Demo : public ::testing::Test {
 protected:
  void SetUp() override {
    programs_before_ = count_v2p_bpf_programs();
    pins_before_ = bpffs_entries();
  }
  void expect_nothing_left_behind() const;
  void expect_verified_demo(const CommandResult& r) const;

  int programs_before_ = 0;
  std::set<std::string> pins_before_;
};

void Demo::expect_nothing_left_behind() const {
  EXPECT_EQ(count_v2p_loop_devices(), 0) << "a loop device of the demo is still attached";
  for (const auto& entry : bpffs_entries()) {
    EXPECT_TRUE(pins_before_.count(entry)) << "the demo left " << entry << " pinned";
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (count_v2p_bpf_programs() > programs_before_ &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_LE(count_v2p_bpf_programs(), programs_before_) << "a v2p BPF program is still loaded";
  const auto mounts = run_command({"cat", "/proc/self/mounts"});
  EXPECT_EQ(mounts.out.find("v2p-demo"), std::string::npos) << "a demo mount is still there";
}

void Demo::expect_verified_demo(const CommandResult& r) const {
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("accuracy 100.00%"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("workload verified its data"), std::string::npos) << r.out;
  expect_nothing_left_behind();
}

TEST_F(Demo, FioWorkloadYieldsAVerifiedMap) {
  V2P_REQUIRE_ROOT_AND_BTF();
  V2P_REQUIRE_TOOLS("fio");
  expect_verified_demo(run_command({v2p_binary(), "demo", "--workload", "fio", "--mib", "16"}));
}

TEST_F(Demo, GuestWorkloadYieldsAVerifiedMap) {
  V2P_REQUIRE_ROOT_AND_BTF();
  V2P_REQUIRE_TOOLS("qemu-system-x86_64");
  if (!std::filesystem::exists("/var/cache/v2p/guest/initrd.img")) {
    V2P_SKIP_MISSING_PACKAGE("needs the test guest (scripts/setup.sh builds it)");
  }
  const auto r = run_command({v2p_binary(), "demo", "--workload", "guest"});
  expect_verified_demo(r);
  EXPECT_NE(r.out.find("V2P-GUEST-OK"), std::string::npos) << r.out;
}

TEST_F(Demo, CtrlCCleansUpEverything) {
  V2P_REQUIRE_ROOT_AND_BTF();
  // Interrupted while it is still setting up: every step taken so far must be undone.
  ChildProcess demo({v2p_binary(), "demo", "--workload", "qemu-io"});
  std::string seen;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (seen.find("[2/6]") == std::string::npos && !demo.exited() &&
         std::chrono::steady_clock::now() < deadline) {
    for (const auto& l : demo.read_lines()) seen += l + "\n";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_NE(seen.find("[2/6]"), std::string::npos) << seen;
  demo.terminate(SIGINT);
  while (!demo.exited()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  for (const auto& l : demo.read_lines()) seen += l + "\n";
  EXPECT_NE(demo.exit_code(), 0);
  EXPECT_NE(seen.find("interrupted"), std::string::npos) << seen;
  expect_nothing_left_behind();
}

// Wait until the demo prints `marker` (or exits); returns everything it printed.
std::string read_until(ChildProcess& demo, const std::string& marker) {
  std::string seen;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (seen.find(marker) == std::string::npos && !demo.exited() &&
         std::chrono::steady_clock::now() < deadline) {
    for (const auto& l : demo.read_lines()) seen += l + "\n";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return seen;
}

TEST_F(Demo, NextRunCleansUpAfterAKilledOne) {
  V2P_REQUIRE_ROOT_AND_BTF();
  V2P_REQUIRE_TOOLS("fio");
  {
    ChildProcess killed({v2p_binary(), "demo", "--workload", "qemu-io"});
    const auto seen = read_until(killed, "[3/6]");
    ASSERT_NE(seen.find("[3/6]"), std::string::npos) << seen;
    killed.terminate(SIGKILL);
    while (!killed.exited()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(count_v2p_loop_devices(), 1) << "SIGKILL leaves the loop device behind";
  const auto r = run_command({v2p_binary(), "demo", "--workload", "fio", "--mib", "4"});
  EXPECT_NE(r.out.find("left by an earlier demo"), std::string::npos) << r.out;
  expect_verified_demo(r);
}

// The live query path: `v2p demo --keep --snapshot FILE` keeps the chain running after its report
// and rewrites FILE; I/O a client does through the export afterwards shows up in FILE, which
// `v2p map` and `v2p whose --snapshot` read while the chain runs.
TEST_F(Demo, KeptChainPublishesTheLiveMapAsSnapshots) {
  V2P_REQUIRE_ROOT_AND_BTF();
  V2P_REQUIRE_TOOLS("qemu-io");
  const auto dir =
      std::filesystem::path("/var/tmp") / ("v2p-live-snapshot." + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  struct RemoveDir {  // also when an assertion or an exception leaves the test early
    std::filesystem::path p;
    ~RemoveDir() {
      std::error_code ec;
      std::filesystem::remove_all(p, ec);
    }
  } remove_dir{dir};
  const auto snap = dir / "live.v2pmap";
  {
    ChildProcess demo({v2p_binary(), "demo", "--workload", "qemu-io", "--snapshot", snap.string(),
                       "--snapshot-ms", "100", "--keep"});
    std::string seen = read_until(demo, "query it with");
    ASSERT_NE(seen.find("query it with"), std::string::npos) << seen;
    const auto at = seen.find("export nbd+unix://");
    ASSERT_NE(at, std::string::npos) << seen;
    const auto uri = seen.substr(at + 7, seen.find('\n', at) - at - 7);
    // The demo's own agent: its web page shows the demo VM's regions on the loop device.
    const auto web_at = seen.find("web view (heat map, latency per layer): ");
    ASSERT_NE(web_at, std::string::npos) << seen;
    const auto web_from = seen.find("http://", web_at);
    const auto web = seen.substr(web_from, seen.find('\n', web_from) - web_from);
    const auto heat = run_command({"curl", "-sf", web + "api/heat"});
    EXPECT_EQ(heat.exit_code, 0) << heat.err;
    EXPECT_NE(heat.out.find("\"vms\":[\"demo-vm\"]"), std::string::npos) << heat.out;

    struct stat st {};
    ASSERT_EQ(::stat(snap.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    auto r = run_command({v2p_binary(), "map", "--snapshot", snap.string()});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("demo-vm/disk0"), std::string::npos) << r.out;

    // New I/O through the export of the running chain, far from what the demo wrote.
    constexpr std::uint64_t kAt = 200ULL << 20;
    const auto before = correlator::load_snapshot(snap);
    ASSERT_EQ(before.declarations.size(), 1u);
    const VdiskKey key{VmId{before.declarations[0].vm_id},
                       VdiskId{before.declarations[0].vdisk_id}};
    EXPECT_FALSE(before.map.find(key, VirtualOffset{kAt}).has_value());
    r = run_command({"qemu-io", "-f", "raw", uri, "-c", "write -P 0x44 200M 1M", "-c", "flush"});
    ASSERT_EQ(r.exit_code, 0) << uri << "\n" << r.out << r.err;
    std::optional<MappedExtent> found;
    for (int i = 0; i < 100 && !found; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      found = correlator::load_snapshot(snap).map.find(key, VirtualOffset{kAt});
    }
    ASSERT_TRUE(found.has_value()) << "the write never reached the live snapshot";
    EXPECT_EQ(found->confidence, 1.0f);
    r = run_command(
        {v2p_binary(), "whose",
         std::to_string(found->device.major()) + ":" + std::to_string(found->device.minor()),
         std::to_string(found->sector.value()), "--snapshot", snap.string()});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("voffset 0xc800000"), std::string::npos) << r.out;

    demo.terminate(SIGINT);
    while (!demo.exited()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    for (const auto& l : demo.read_lines()) seen += l + "\n";
    EXPECT_EQ(demo.exit_code(), 0) << seen;
    EXPECT_NE(seen.find("snapshots written"), std::string::npos) << seen;
  }
  expect_nothing_left_behind();
}

// A copy of the v2p binary and the libraries it loads from outside the system's library
// folders, in a fresh 0755 folder: an unprivileged user cannot read a build tree under /root.
class ReadableCopy {
 public:
  explicit ReadableCopy(const std::filesystem::path& binary) {
    char templ[] = "/tmp/v2p-unprivileged.XXXXXX";
    if (::mkdtemp(templ) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = templ;
    std::filesystem::permissions(dir_, std::filesystem::perms(0755));
    copy(binary);
    const auto ldd = run_checked({"ldd", binary.string()});
    std::istringstream lines(ldd);
    for (std::string line; std::getline(lines, line);) {
      const auto arrow = line.find("=> /");
      if (arrow == std::string::npos) continue;
      const std::string lib = line.substr(arrow + 3, line.find(" (", arrow) - arrow - 3);
      if (!lib.starts_with("/lib") && !lib.starts_with("/usr/")) copy(lib);
    }
  }
  ~ReadableCopy() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  ReadableCopy(const ReadableCopy&) = delete;
  ReadableCopy& operator=(const ReadableCopy&) = delete;
  std::filesystem::path binary() const { return dir_ / name_; }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  void copy(const std::filesystem::path& from) {
    const auto to = dir_ / from.filename();
    std::filesystem::copy_file(from, to);
    std::filesystem::permissions(to, std::filesystem::perms(0755));
    if (name_.empty()) name_ = from.filename();
  }
  std::filesystem::path dir_;
  std::filesystem::path name_;
};

TEST_F(Demo, WithoutRootSaysSoInOneLine) {
  V2P_REQUIRE_TOOLS("setpriv", "ldd");
  V2P_REQUIRE_ROOT("drops to another user");
  auto binary = run_checked({"sh", "-c", "command -v \"$0\"", v2p_binary()});
  binary.erase(binary.find_last_not_of('\n') + 1);
  const ReadableCopy copy(binary);
  const auto r =
      run_command({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env",
                   "LD_LIBRARY_PATH=" + copy.dir().string(), copy.binary().string(), "demo"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("needs root"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

}  // namespace
}  // namespace v2p
