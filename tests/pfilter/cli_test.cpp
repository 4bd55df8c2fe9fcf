// `v2p probe` end to end through the real binary ($V2P_BINARY): record a tagged write on a loop
// device, stop with SIGTERM, check nothing stays in the kernel and the recording replays.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "common/loop_filesystem.hpp"
#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "pfilter/io_uring_writer.hpp"
#include "pfilter/replay.hpp"
#include "v2p/tag.hpp"

namespace v2p::pfilter {
namespace {

namespace fs = std::filesystem;

std::string v2p_binary() {
  const char* b = std::getenv("V2P_BINARY");
  return b != nullptr ? b : "";
}

bool wait_for_line(ChildProcess& child, const std::string& needle, std::string& seen) {
  for (int i = 0; i < 100; ++i) {
    for (const auto& line : child.read_lines()) {
      seen += line + "\n";
      if (line.find(needle) != std::string::npos) return true;
    }
    if (child.exited()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

TEST(ProbeCli, RecordsAndCleansUpOnSigterm) {
  V2P_REQUIRE_ROOT("loop devices, eBPF");
  V2P_REQUIRE_BTF();
  if (v2p_binary().empty()) V2P_SKIP_MACHINE("V2P_BINARY is not set (run through ctest)");
  reap_stale_loop_filesystems("/var/tmp/v2p-pfilter-cli-");
  const fs::path dir = "/var/tmp/v2p-pfilter-cli-" + std::to_string(::getpid());
  fs::create_directories(dir);
  struct RemoveDir {
    fs::path p;
    ~RemoveDir() {
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  } remove_dir{dir};
  LoopFilesystem host({dir / "host.img", dir / "mnt", 256ULL << 20, "ext4", true});
  const fs::path pins = "/sys/fs/bpf/v2p-test-cli-" + std::to_string(::getpid());
  const auto record = dir / "probe.v2p";
  // Declared before the child so it runs after the child is killed on a failed assertion.
  RemoveDir remove_pins{pins};

  ChildProcess probe({v2p_binary(), "probe", "--device", host.mountpoint().string(), "--record",
                      record.string(), "--pin-dir", pins.string(), "--stats-interval", "0.2"});
  std::string output;
  ASSERT_TRUE(wait_for_line(probe, "attached", output)) << output;
  EXPECT_TRUE(fs::exists(pins / "v2p_events"));
  test::write_tagged(host.mountpoint() / "vm.raw", {test::tagged_block(0, 42)});
  ASSERT_TRUE(wait_for_line(probe, "events/s", output)) << output;
  probe.terminate(SIGTERM);
  for (int i = 0; i < 100 && !probe.exited(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(probe.exited());
  EXPECT_EQ(probe.exit_code(), 0) << output;
  EXPECT_FALSE(fs::exists(pins));

  bool loop_declared = false;
  bool tagged_write = false;
  ReplayHandlers h;
  h.on_device = [&](const BlockDevice& d) {
    if (d.id == host.device()) {
      loop_declared = d.kind == DeviceKind::kLoop && d.backing_file == (dir / "host.img").string();
    }
  };
  h.on_event = [&](const PhysEvent& e) {
    if (e.device() == host.device() && tag::slot_from_ioprio(e.ioprio) == 42 &&
        e.tgid == static_cast<std::uint32_t>(::getpid())) {
      tagged_write = true;
    }
  };
  const auto counts = replay_stream(record, h);
  EXPECT_TRUE(loop_declared);
  EXPECT_TRUE(tagged_write);
  EXPECT_EQ(counts.lost_total, 0U);
}

}  // namespace
}  // namespace v2p::pfilter
