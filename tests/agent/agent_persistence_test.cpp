// The agent's state dir across a kill -9 (a child process running the agent, killed with
// SIGKILL): the changes after the last snapshot come back from map.log; a torn log restores
// what precedes the tear; a crash between saving the snapshot and rotating the log neither
// loses nor replays changes twice.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "agent/agent.hpp"
#include "agent/agent_client.hpp"
#include "agent/map_log.hpp"
#include "agent/running_agent.hpp"
#include "common/error.hpp"
#include "correlator/snapshot.hpp"
#include "vfilter/agent_sink.hpp"

namespace v2p::agent {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr std::size_t kHeader = 16;

using test_support::RunningAgent;

class AgentPersistenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(state_);
    std::ofstream(dir_ / "vm1.raw") << "image";
    std::ofstream(dir_ / "vm2.raw") << "image";
    o_.query_socket = dir_ / "agent.sock";
    o_.ingest_socket = dir_ / "ingest.sock";
    o_.state_dir = state_;
    o_.probe = false;
    o_.snapshot_interval_ms = 3'600'000;  // only the ones the test asks for
    // The last snapshot: vm1/disk0 has 1 MiB at 7:9 sector 2048.
    correlator::Correlator c;
    c.declare({1, 1, "vm1", "disk0", (dir_ / "vm1.raw").string()});
    c.mutable_map().map({VmId{1}, VdiskId{1}},
                        Mapping{VirtualOffset{0}, 1 << 20, DeviceId::from_major_minor(7, 9),
                                PhysicalSector{2048}, 1, 1.0F});
    correlator::save_snapshot(c, state_ / "map.snap");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  json ask(json request) { return query_agent(o_.query_socket, std::move(request), 5000); }
  std::uint64_t first_extent_of_vm1() {
    const auto m = ask({{"op", "map"}, {"vm", "vm1"}, {"offset", 0}, {"length", 1 << 20}});
    return m["vdisks"][0]["extents"][0]["voffset"].get<std::uint64_t>();
  }
  // Records in map.log so far (a copy is replayed: the real one is the agent's).
  std::uint64_t logged_records() {
    const auto copy = dir_ / "copy.log";
    std::filesystem::copy_file(state_ / "map.log", copy,
                               std::filesystem::copy_options::overwrite_existing);
    V2PMap scratch;
    const auto r = replay_map_log(copy, 0, {scratch, [](const VdiskDeclaration&) {}, [](auto) {}});
    return r.records;
  }

  // Runs the agent in a child process, makes changes after the snapshot (vm2 declared, vm1's
  // first 64 KiB discarded), waits until they are in map.log, and kills the child with SIGKILL.
  void changes_then_kill() {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      try {
        Agent a(o_);
        for (;;) a.round(5);
      } catch (...) {
      }
      ::_exit(1);
    }
    {
      vfilter::AgentSinkOptions s;
      s.socket = o_.ingest_socket;
      s.min_backoff = 10ms;
      s.max_backoff = 50ms;
      vfilter::AgentSink sink(s);
      sink.declare({1, 1, "vm1", "disk0", (dir_ / "vm1.raw").string()});
      sink.declare({1, 2, "vm2", "disk0", (dir_ / "vm2.raw").string()});
      for (int i = 0; i < 500 && !sink.stats().connected; ++i) std::this_thread::sleep_for(10ms);
      ASSERT_TRUE(sink.stats().connected);
      ContextRecord r;
      r.vm_id = 1;
      r.vdisk_id = 1;
      r.voffset = 0;
      r.length = 65536;
      r.op = static_cast<std::uint8_t>(IoOp::kDiscard);
      r.submit_ns = 10;
      r.complete_ns = 20;
      sink.publish(r);
      // Declarations (2) and the discard's change (1), written within the log interval.
      bool logged = false;
      for (int i = 0; i < 500 && !logged; ++i) {
        std::this_thread::sleep_for(10ms);
        logged = std::filesystem::exists(state_ / "map.log") && logged_records() >= 3;
      }
      ASSERT_TRUE(logged);
      ASSERT_EQ(first_extent_of_vm1(), 65536u);
      ASSERT_EQ(::kill(child, SIGKILL), 0);  // with the export still connected
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status));
    // Killed: the snapshot is still the one from before the changes.
    ASSERT_EQ(correlator::load_snapshot(state_ / "map.snap")
                  .map.extents({VmId{1}, VdiskId{1}})[0]
                  .voffset.value(),
              0u);
  }

  std::filesystem::path dir_ =
      std::filesystem::temp_directory_path() / ("v2p-agent-persist-" + std::to_string(::getpid()));
  std::filesystem::path state_ = dir_ / "state";
  AgentOptions o_;
};

TEST_F(AgentPersistenceTest, ChangesAfterTheLastSnapshotSurviveAKill) {
  changes_then_kill();
  if (HasFatalFailure()) return;
  RunningAgent agent(o_);
  EXPECT_EQ(first_extent_of_vm1(), 65536u);
  // vm2's declaration came back too (it has no extents, so `vms` does not list it): a new vdisk
  // is numbered after it instead of taking its id.
  vfilter::AgentSinkOptions s;
  s.socket = o_.ingest_socket;
  vfilter::AgentSink sink(s);
  sink.declare({1, 1, "vm3", "disk0", (dir_ / "vm2.raw").string()});
  json vms;
  for (int i = 0; i < 500 && vms.size() < 2; ++i) {
    std::this_thread::sleep_for(10ms);
    vms = ask({{"op", "vms"}})["vms"];
  }
  ASSERT_EQ(vms.size(), 2u);
  EXPECT_EQ(vms[1]["vm"], "vm3");
  EXPECT_EQ(vms[1]["vdisks"][0]["vdisk_id"], 3);
  const auto stats = ask({{"op", "stats"}})["agent"];
  EXPECT_EQ(stats["log_records_replayed"], 3);
  EXPECT_EQ(stats["log_bad_tails"], 0);
}

TEST_F(AgentPersistenceTest, ATornLastRecordRestoresEverythingBeforeIt) {
  changes_then_kill();
  if (HasFatalFailure()) return;
  // The discard's change is the last record; tear it.
  const auto size = std::filesystem::file_size(state_ / "map.log");
  std::filesystem::resize_file(state_ / "map.log", size - 10);
  RunningAgent agent(o_);
  EXPECT_EQ(first_extent_of_vm1(), 0u);  // the snapshot's extent, whole: never a half change
  const auto stats = ask({{"op", "stats"}})["agent"];
  EXPECT_EQ(stats["log_records_replayed"], 2);
  EXPECT_EQ(stats["log_bad_tails"], 1);
}

TEST_F(AgentPersistenceTest, ACrashBetweenSnapshotAndLogRotationLosesAndDoublesNothing) {
  changes_then_kill();
  if (HasFatalFailure()) return;
  // persist()'s first step done, the second not: the snapshot of epoch 1 holds the changes,
  // the log is still epoch 0's.
  {
    auto s = correlator::load_snapshot(state_ / "map.snap");
    correlator::Correlator c;
    c.mutable_map() = std::move(s.map);
    for (const auto& d : s.declarations) c.declare(d);
    const auto r = replay_map_log(
        state_ / "map.log", s.log_epoch,
        {c.mutable_map(), [&](const VdiskDeclaration& d) { c.declare(d); }, [](auto) {}});
    ASSERT_EQ(r.records, 3u);
    correlator::save_snapshot(c, state_ / "map.snap", s.log_epoch + 1);
  }
  {
    RunningAgent agent(o_);
    EXPECT_EQ(first_extent_of_vm1(), 65536u);
    EXPECT_EQ(ask({{"op", "stats"}})["agent"]["log_records_replayed"], 0);
    // A fresh log continues the snapshot.
    EXPECT_EQ(std::filesystem::file_size(state_ / "map.log"), kHeader);
  }
  // A clean stop: snapshot of the next epoch, empty log of that epoch.
  EXPECT_EQ(correlator::load_snapshot(state_ / "map.snap").log_epoch, 2u);
  EXPECT_EQ(std::filesystem::file_size(state_ / "map.log"), kHeader);
  RunningAgent again(o_);
  EXPECT_EQ(first_extent_of_vm1(), 65536u);
}

}  // namespace
}  // namespace v2p::agent
