// The product on a host, end to end (root, BTF): `v2p agent` probing a loop-device ext4,
// `v2p serve --agent` exporting an image on it, real NBD clients (qemu-io, fio) writing through
// the export, and the query commands asking the agent. Also: the agent killed -9 in the middle
// of a workload, which must finish without an I/O error, and the agent re-learning afterwards.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/loop_filesystem.hpp"
#include "common/subprocess.hpp"
#include "common/test_skip.hpp"

namespace v2p {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

std::string binary() {
  const char* b = std::getenv("V2P_BINARY");
  return b ? b : "v2p";
}

// A v2p process whose output is collected line by line.
struct Proc {
  explicit Proc(std::vector<std::string> args) {
    args.insert(args.begin(), binary());
    child = std::make_unique<ChildProcess>(args);
  }
  bool wait_for(const std::string& needle, std::chrono::milliseconds limit = 15s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      for (auto& l : child->read_lines()) lines.push_back(std::move(l));
      for (const auto& l : lines) {
        if (l.find(needle) != std::string::npos) return true;
      }
      if (child->exited()) return false;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }
  std::string output() {
    for (auto& l : child->read_lines()) lines.push_back(std::move(l));
    std::string all;
    for (const auto& l : lines) all += l + "\n";
    return all;
  }
  std::unique_ptr<ChildProcess> child;
  std::vector<std::string> lines;
};

class AgentOnAHost : public ::testing::Test {
 protected:
  void SetUp() override {
    V2P_REQUIRE_ROOT("loop devices, eBPF");
    V2P_REQUIRE_BTF();
    V2P_REQUIRE_TOOLS("qemu-io", "fio");
    std::filesystem::create_directories(dir_);
    LoopFilesystem::Options o;
    o.backing_file = dir_ / "fs.img";
    o.mountpoint = dir_ / "mnt";
    o.size_bytes = 256ULL << 20;
    fs_ = std::make_unique<LoopFilesystem>(o);
    image_ = fs_->mountpoint() / "vm1.raw";
    run_checked({"truncate", "-s", "64M", image_.string()});
  }
  void TearDown() override {
    serve_.reset();
    agent_.reset();
    fs_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  void start_agent() {
    agent_ = std::make_unique<Proc>(std::vector<std::string>{
        "agent", "--socket", query_.string(), "--ingest-socket", ingest_.string(), "--state-dir",
        (dir_ / "state").string(), "--snapshot-interval-ms", "300"});
    ASSERT_TRUE(agent_->wait_for("v2p agent: ready")) << agent_->output();
  }
  void start_serve() {
    serve_ = std::make_unique<Proc>(
        std::vector<std::string>{"serve", "--image", image_.string(), "--vm", "vm1", "--vdisk",
                                 "disk0", "--socket", nbd_.string(), "--agent", ingest_.string()});
    ASSERT_TRUE(serve_->wait_for("v2p serve: ready")) << serve_->output();
    // The export announces its image at once; the probe is on its device before any client.
    for (int i = 0; i < 100 && devices_probed() == 0; ++i) std::this_thread::sleep_for(50ms);
    ASSERT_GT(devices_probed(), 0u) << agent_->output();
  }
  std::uint64_t devices_probed() {
    const auto s = status();
    return s.is_null() ? 0 : s["stats"]["devices_probed"].get<std::uint64_t>();
  }
  CommandResult v2p(std::vector<std::string> args) {
    args.insert(args.begin(), binary());
    args.push_back("--agent");
    args.push_back(query_.string());
    return run_command(args);
  }
  json status() {
    const auto r = v2p({"status", "--json"});
    EXPECT_TRUE(r.ok()) << r.err;
    return r.ok() ? json::parse(r.out) : json{};
  }
  // The agent's verify of vm1 once it has seen `bytes` mapped (or after 15 s).
  json verify_when_mapped(std::uint64_t bytes) {
    json v;
    for (int i = 0; i < 150; ++i) {
      const auto r = v2p({"verify", "--vm", "vm1", "--json", "--allow-mismatch"});
      if (r.ok()) {
        v = json::parse(r.out)["vdisks"][0];
        if (v["bytes_observed"].get<std::uint64_t>() >= bytes) break;
      }
      std::this_thread::sleep_for(100ms);
    }
    return v;
  }
  std::string uri() const { return "nbd+unix:///disk0?socket=" + nbd_.string(); }

  std::filesystem::path dir_ = "/tmp/v2p-agent-it-" + std::to_string(::getpid());
  std::filesystem::path query_ = dir_ / "agent.sock", ingest_ = dir_ / "ingest.sock",
                        nbd_ = dir_ / "vm1.sock";
  std::unique_ptr<LoopFilesystem> fs_;
  std::filesystem::path image_;
  std::unique_ptr<Proc> agent_, serve_;
};

TEST_F(AgentOnAHost, TheLiveMapMatchesFiemapAndVmsComeAndGo) {
  start_agent();
  start_serve();
  const auto w = run_command({"qemu-io", "-f", "raw", "-c", "write -P 0xab 0 8M", "-c",
                              "write -P 0xcd 16M 4M", "-c", "write 40M 1M", "-c", "flush", uri()});
  ASSERT_EQ(w.exit_code, 0) << w.err;
  const auto v = verify_when_mapped(13ULL << 20);
  ASSERT_FALSE(v.is_null()) << agent_->output();
  EXPECT_EQ(v["bytes_observed"], 13ULL << 20) << v.dump() << agent_->output();
  EXPECT_EQ(v["bytes_wrong"], 0) << v.dump();
  EXPECT_EQ(v["accuracy"], 1.0);
  EXPECT_EQ(v["coverage"], 1.0) << v.dump();
  // The same through `v2p map --json`, and `whose` of its first sector.
  const auto m = v2p({"map", "--vm", "vm1", "--json"});
  ASSERT_TRUE(m.ok()) << m.err;
  const auto map = json::parse(m.out)["vdisks"][0];
  std::uint64_t mapped = 0;
  for (const auto& e : map["extents"]) mapped += e["length"].get<std::uint64_t>();
  EXPECT_EQ(mapped, 13ULL << 20);
  const auto& first = map["extents"][0];
  const auto who = v2p({"whose", first["device"].get<std::string>(),
                        std::to_string(first["sector"].get<std::uint64_t>()), "--json"});
  ASSERT_TRUE(who.ok()) << who.err << who.out;
  EXPECT_EQ(json::parse(who.out)["owner"]["vm"], "vm1");
  EXPECT_EQ(json::parse(who.out)["owner"]["voffset"], first["voffset"]);
  // An unknown VM is a clear error.
  const auto unknown = v2p({"map", "--vm", "vm404"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.err.find("unknown vm 'vm404' (the agent knows: vm1)"), std::string::npos)
      << unknown.err;
  // The export goes (QEMU exit): its vdisk leaves the agent, and the event is logged.
  EXPECT_EQ(status()["vms"].size(), 1u);
  serve_->child->terminate(SIGTERM);
  for (int i = 0; i < 100 && !status()["vms"].empty(); ++i) std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(status()["vms"].empty());
  EXPECT_TRUE(agent_->wait_for("vdisk vm1/disk0 dropped")) << agent_->output();
  // An operator adds a vdisk before its export runs: probed at once, kept until removed.
  const auto add = v2p({"vm", "add", "vm2", "--vdisk", "d0", "--image", image_.string()});
  ASSERT_TRUE(add.ok()) << add.err;
  const auto vms = status()["vms"];
  ASSERT_EQ(vms.size(), 1u);
  EXPECT_EQ(vms[0]["vdisks"][0]["probed"], true);
  const auto missing = v2p({"vm", "add", "vm3", "--vdisk", "d0", "--image", "/nonexistent.raw"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("image /nonexistent.raw is missing"), std::string::npos)
      << missing.err;
  ASSERT_TRUE(v2p({"vm", "remove", "vm2"}).ok());
  EXPECT_TRUE(status()["vms"].empty());
  EXPECT_EQ(status()["stats"]["devices_probed"], 0);  // the probe left with the last vdisk
}

// The agent hands the export its probe's slot table: the export's tagged repeats are then
// counted in the kernel, not sent, and the map stays exact.
TEST_F(AgentOnAHost, AnExportsRepeatsAreCountedInTheKernel) {
  start_agent();
  start_serve();
  // 64 KiB requests: one bio each. (The pieces of a request the block layer splits share one
  // slot context, so they are always sent: docs/pfilter.md.)
  std::vector<std::string> writes{"qemu-io", "-f", "raw"};
  for (int k = 0; k < 64; ++k) {
    writes.push_back("-c");
    writes.push_back("write -P 0x5a " + std::to_string(k * 64) + "k 64k");
  }
  writes.push_back("-c");
  writes.push_back("flush");
  writes.push_back(uri());
  const auto w = run_command(writes);
  ASSERT_EQ(w.exit_code, 0) << w.err;
  const auto v = verify_when_mapped(4ULL << 20);
  ASSERT_FALSE(v.is_null()) << agent_->output();
  EXPECT_EQ(v["bytes_observed"], 4ULL << 20) << v.dump();
  json stats;
  for (int i = 0; i < 100; ++i) {
    stats = status()["stats"];
    if (stats["agent"]["slot_tables_granted"].get<std::uint64_t>() > 0) break;
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_EQ(stats["agent"]["slot_tables_granted"], 1) << stats.dump() << agent_->output();
  ASSERT_EQ(stats["probe"]["every_bio"], false) << stats.dump();
  const auto tagged_counted = [this] {
    const auto p = status()["stats"]["probe"];
    return p["suppressed_bios"].get<std::uint64_t>() - p["untagged_bios"].get<std::uint64_t>();
  };
  const auto before = tagged_counted();
  // The same 64 writes again, three times: ext4 overwrites in place, so each range is at the
  // place the map has, for the same context: counted, not sent.
  for (int round = 0; round < 3; ++round) {
    const auto r = run_command(writes);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  EXPECT_GE(tagged_counted() - before, 3u * 64u) << status()["stats"].dump();
  const auto after = verify_when_mapped(4ULL << 20);
  EXPECT_EQ(after["bytes_wrong"], 0) << after.dump();
  EXPECT_EQ(after["accuracy"], 1.0) << after.dump();
}

TEST_F(AgentOnAHost, KilledMidWorkloadTheDataPathGoesOnAndTheAgentRelearns) {
  start_agent();
  start_serve();
  ChildProcess fio({"fio", "--name=w", "--ioengine=nbd", "--uri=" + uri(), "--rw=randwrite",
                    "--bs=64k", "--iodepth=8", "--size=48M", "--time_based", "--runtime=4",
                    "--output-format=json"});
  std::this_thread::sleep_for(1200ms);
  agent_->child->terminate(SIGKILL);  // no goodbye: the export finds out by itself
  std::this_thread::sleep_for(1000ms);
  start_agent();  // restores its snapshot; the export reconnects and declares again
  while (!fio.exited()) std::this_thread::sleep_for(50ms);
  std::string out;
  for (const auto& l : fio.read_lines()) out += l + "\n";
  ASSERT_EQ(fio.exit_code(), 0) << out;
  const auto report = json::parse(out.substr(out.find('{')));
  EXPECT_EQ(report["jobs"][0]["error"], 0) << out;
  EXPECT_GT(report["jobs"][0]["write"]["io_bytes"].get<std::uint64_t>(), 0u);
  // Re-learned: vm1 is known again, and the records of the time away are counted as lost.
  json s;
  for (int i = 0; i < 100; ++i) {
    s = status();
    if (!s["vms"].empty() && s["stats"]["agent"]["records_lost"].get<std::uint64_t>() > 0) break;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(s["vms"].size(), 1u) << s.dump() << agent_->output();
  EXPECT_GT(s["stats"]["agent"]["records_lost"].get<std::uint64_t>(), 0u) << s.dump();
  EXPECT_GT(s["stats"]["agent"]["restored_extents"].get<std::uint64_t>(), 0u) << s.dump();
  // New writes are mapped live again; nothing the agent holds is wrong.
  const auto w =
      run_command({"qemu-io", "-f", "raw", "-c", "write -P 0x5a 60M 2M", "-c", "flush", uri()});
  ASSERT_EQ(w.exit_code, 0) << w.err;
  std::this_thread::sleep_for(1500ms);
  const auto v = verify_when_mapped(2ULL << 20);
  EXPECT_EQ(v["bytes_wrong"], 0) << v.dump();
  EXPECT_GE(v["bytes_observed"].get<std::uint64_t>(), 2ULL << 20) << v.dump();
}

}  // namespace
}  // namespace v2p
