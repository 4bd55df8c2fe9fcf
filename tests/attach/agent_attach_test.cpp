// The agent attaching by itself (root, BTF, QEMU): `v2p agent --attach qemu-PID` finds the opted-in
// qemu-storage-daemon, attaches, maps what fio writes through it, and detaches when it exits.
// The map is then asked through the agent's `v2p verify`.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/attach/attach_fixture.hpp"

namespace v2p::test {
namespace {

using namespace std::chrono_literals;

bool wait_for_line(ChildProcess& p, std::string& out, const std::string& needle) {
  for (int i = 0; i < 600; ++i) {
    for (const auto& l : p.read_lines()) out += l + "\n";
    if (out.find(needle) != std::string::npos) return true;
    if (p.exited()) return false;
    std::this_thread::sleep_for(25ms);
  }
  return false;
}

TEST(AgentAttach, AttachesAnOptedInDaemonByItselfAndDetachesWhenItExits) {
  V2P_REQUIRE_ROOT("uprobes");
  V2P_REQUIRE_BTF();
  V2P_REQUIRE_TOOLS("mkfs.ext4", "qemu-img", "qemu-storage-daemon", "fio", "bpftool");
  AttachScratch scratch;
  LoopFilesystem host(
      {scratch.path() / "host.img", scratch.path() / "mnt", 256ULL << 20, "ext4", true});
  const auto image = host.mountpoint() / "vm.qcow2";
  run_checked({"qemu-img", "create", "-q", "-f", "qcow2", image.string(), "32M"});
  const auto other_image = host.mountpoint() / "other.qcow2";
  run_checked({"qemu-img", "create", "-q", "-f", "qcow2", other_image.string(), "32M"});
  QsdExport qsd(image, scratch.path() / "nbd.sock");
  QsdExport other(other_image, scratch.path() / "other.sock");
  const auto vm = "qemu-" + std::to_string(qsd.pid());
  const auto query = scratch.path() / "agent.sock";
  ChildProcess agent({V2P_CLI_PATH, "agent", "--socket", query.string(), "--ingest-socket",
                      (scratch.path() / "ingest.sock").string(), "--no-state", "--attach", vm});
  std::string out;
  ASSERT_TRUE(wait_for_line(
      agent, out, "attach: process " + std::to_string(qsd.pid()) + " (vm " + vm + ") attached"))
      << out;
  run_checked({"fio", "--name=w", "--ioengine=nbd", "--uri=" + qsd.uri(), "--rw=randwrite",
               "--bs=4k", "--iodepth=32", "--size=32M", "--io_size=4M", "--output=/dev/null"});
  std::this_thread::sleep_for(1s);   // the agent's join holds bios 300 ms
  qsd.process().terminate(SIGTERM);  // its qcow2 tables reach the disk: the ground truth
  ASSERT_TRUE(wait_for_line(agent, out, "vm " + vm + ") exited; detached")) << out;
  EXPECT_EQ(out.find("(vm qemu-" + std::to_string(other.pid()) + ")"), std::string::npos)
      << "a daemon that was not opted in must not be attached\n"
      << out;
  const auto r = run_command({V2P_CLI_PATH, "verify", "--vm", vm, "--json", "--allow-mismatch",
                              "--agent", query.string()});
  ASSERT_TRUE(r.ok()) << r.err << out;
  const auto v = nlohmann::json::parse(r.out)["vdisks"][0];
  std::printf("ACCURACY agent-attach qsd ext4 QD32: %s\n", v.dump().c_str());
  EXPECT_GE(v["bytes_observed"].get<std::uint64_t>(), 3u << 20) << r.out;
  EXPECT_GE(v["accuracy"].get<double>(), 0.99) << r.out;
  agent.terminate(SIGTERM);
  while (!agent.exited()) std::this_thread::sleep_for(20ms);
  EXPECT_EQ(own_perf_attachments(), "");
}

}  // namespace
}  // namespace v2p::test
