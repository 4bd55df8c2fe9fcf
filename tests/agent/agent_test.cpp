// The agent with real sockets and a real export-side sink, without the probe (no root needed):
// declarations, records, loss across an agent restart, export departure, query bounds, restore.
#include "agent/agent.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "agent/agent_client.hpp"
#include "agent/running_agent.hpp"
#include "agent/unix_listener.hpp"
#include "common/error.hpp"
#include "correlator/snapshot.hpp"
#include "vfilter/agent_sink.hpp"

namespace v2p::agent {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

std::filesystem::path tmp(const std::string& name) {
  return std::filesystem::temp_directory_path() /
         ("v2p-agent-" + std::to_string(::getpid()) + "-" + name);
}

using test_support::RunningAgent;

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_);
    std::ofstream(image_) << "image";
    o_.query_socket = dir_ / "agent.sock";
    o_.ingest_socket = dir_ / "ingest.sock";
    o_.state_dir.clear();
    o_.probe = false;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  json ask(json request) { return query_agent(o_.query_socket, std::move(request), 5000); }
  std::string error_of(json request) {
    try {
      ask(std::move(request));
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
  // Polls `stat` of the agent's stats until pred holds (up to 5 s).
  template <class Pred>
  bool eventually(Pred pred) {
    for (int i = 0; i < 500; ++i) {
      if (pred(ask({{"op", "stats"}}))) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }
  vfilter::AgentSinkOptions sink_options() {
    vfilter::AgentSinkOptions s;
    s.socket = o_.ingest_socket;
    s.queue_records = 4096;
    s.min_backoff = 10ms;
    s.max_backoff = 50ms;
    return s;
  }

  std::filesystem::path dir_ = tmp("t");
  std::filesystem::path image_ = dir_ / "vm1.raw";
  AgentOptions o_;
};

TEST_F(AgentTest, LearnsVdisksSkipsMissingImagesAndNamesUnknownVms) {
  RunningAgent agent(o_);
  vfilter::AgentSink sink(sink_options());
  sink.declare({1, 1, "vm1", "disk0", image_.string()});
  sink.declare({2, 2, "vm2", "disk0", (dir_ / "missing.raw").string()});
  ASSERT_TRUE(eventually([](const json& s) { return s["agent"]["vdisks_skipped"] == 1; }));
  const auto vms = ask({{"op", "vms"}})["vms"];
  ASSERT_EQ(vms.size(), 2u);
  EXPECT_EQ(vms[0]["vm"], "vm1");
  EXPECT_EQ(vms[0]["vdisks"][0]["image"], image_.string());
  EXPECT_EQ(vms[0]["vdisks"][0]["connected"], true);
  EXPECT_EQ(vms[0]["vdisks"][0]["probed"], false);  // this agent runs without the probe
  EXPECT_EQ(vms[1]["vdisks"][0]["probed"], false);
  EXPECT_EQ(error_of({{"op", "map"}, {"vm", "vm9"}}),
            "unknown vm 'vm9' (the agent knows: vm1, vm2)");
  EXPECT_EQ(error_of({{"op", "map"}, {"vm", "vm1"}, {"vdisk", "nope"}}),
            "vm 'vm1' has no vdisk 'nope'");
  EXPECT_EQ(ask({{"op", "map"}, {"vm", "vm1"}})["vdisks"][0]["extents"].size(), 0u);
}

TEST_F(AgentTest, CountsRecordsAndTheLossWhileItWasAway) {
  auto sink = std::make_unique<vfilter::AgentSink>(sink_options());
  sink->declare({1, 1, "vm1", "disk0", image_.string()});
  ContextRecord r;
  r.vm_id = 1;
  r.vdisk_id = 1;
  {
    RunningAgent agent(o_);
    // Records of I/O before the connection could never be joined: the sink counts them lost
    // (checked below), so these wait for it.
    while (!sink->stats().connected) std::this_thread::sleep_for(1ms);
    for (int i = 0; i < 1000; ++i) sink->publish(r);
    ASSERT_TRUE(eventually([](const json& s) { return s["agent"]["records_ingested"] == 1000; }));
  }
  // Agent gone: publishing never blocks, and every record is counted lost (more than the queue
  // holds, so a blocking sink would hang here).
  for (int i = 0; i < 20'000; ++i) sink->publish(r);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(sink->stats().lost, 20'000u);
  EXPECT_FALSE(sink->stats().connected);
  RunningAgent agent(o_);
  // It comes back: the export reconnects, declares its vdisk again and reports the loss.
  ASSERT_TRUE(eventually([](const json& s) { return s["agent"]["records_lost"] == 20'000; }));
  EXPECT_EQ(ask({{"op", "vms"}})["vms"][0]["vm"], "vm1");
  for (int i = 0; i < 10; ++i) sink->publish(r);
  ASSERT_TRUE(eventually([](const json& s) { return s["agent"]["records_ingested"] == 10; }));
  EXPECT_EQ(sink->stats().connections, 2u);
  // The export goes: its vdisk leaves with it.
  sink.reset();
  ASSERT_TRUE(eventually([](const json& s) { return s["agent"]["vdisks_dropped"] == 1; }));
  EXPECT_EQ(ask({{"op", "vms"}})["vms"].size(), 0u);
}

int connect_to(const std::filesystem::path& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, path.c_str());
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  return fd;
}

TEST_F(AgentTest, AFloodingClientIsBoundedAndCounted) {
  o_.queries_per_round = 4;
  RunningAgent agent(o_);
  // 2000 requests in one go from a client that never reads its answers.
  Fd flood(connect_to(o_.query_socket));
  std::string burst;
  for (int i = 0; i < 2000; ++i)
    burst += R"({"v":1,"op":"stats"})"
             "\n";
  ASSERT_EQ(::send(flood.get(), burst.data(), burst.size(), 0), ssize_t(burst.size()));
  // Another client is still answered meanwhile, and the deferrals are counted.
  ASSERT_TRUE(eventually([](const json& s) { return s["agent"]["queries_deferred"] > 0; }));
  // An oversized request is refused and its client dropped.
  Fd big(connect_to(o_.query_socket));
  const std::string junk(kMaxRequestBytes + 100, 'x');
  ::send(big.get(), junk.data(), junk.size(), MSG_NOSIGNAL);
  ASSERT_TRUE(eventually([](const json& s) { return s["agent"]["clients_dropped"] == 1; }));
  char buf[256] = {};
  ASSERT_GT(::recv(big.get(), buf, sizeof buf - 1, 0), 0);
  EXPECT_STREQ(buf, "{\"v\":1,\"ok\":false,\"error\":\"request longer than 4096 bytes\"}\n");
}

TEST_F(AgentTest, VmAddKeepsAVdiskUntilVmRemove) {
  RunningAgent agent(o_);
  EXPECT_EQ(error_of({{"op", "vm_add"},
                      {"vm", "vm3"},
                      {"vdisk", "d0"},
                      {"image", (dir_ / "missing.raw").string()}}),
            "image " + (dir_ / "missing.raw").string() + " is missing");
  ask({{"op", "vm_add"}, {"vm", "vm3"}, {"vdisk", "d0"}, {"image", image_.string()}});
  auto vms = ask({{"op", "vms"}})["vms"];
  ASSERT_EQ(vms.size(), 1u);
  EXPECT_EQ(vms[0]["vdisks"][0]["added"], true);
  EXPECT_EQ(vms[0]["vdisks"][0]["connected"], false);
  EXPECT_EQ(vms[0]["vdisks"][0]["image"], image_.string());
  {
    // An export of the same vdisk comes and goes: the operator's vdisk stays.
    vfilter::AgentSink sink(sink_options());
    sink.declare({1, 1, "vm3", "d0", image_.string()});
    ASSERT_TRUE(eventually([](const json& s) { return s["agent"]["exports_connected"] == 1; }));
    EXPECT_EQ(ask({{"op", "vms"}})["vms"][0]["vdisks"][0]["connected"], true);
  }
  ASSERT_TRUE(eventually([](const json& s) { return s["agent"]["exports_connected"] == 0; }));
  EXPECT_EQ(ask({{"op", "vms"}})["vms"].size(), 1u);
  ask({{"op", "vm_remove"}, {"vm", "vm3"}});
  EXPECT_EQ(ask({{"op", "vms"}})["vms"].size(), 0u);
}

TEST_F(AgentTest, ASecondAgentOnTheSameSocketsIsRefused) {
  RunningAgent agent(o_);
  try {
    Agent second(o_);
    FAIL() << "a second agent took over the sockets";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              o_.ingest_socket.string() + " is in use: another v2p agent is running");
  }
  // The first one still answers.
  EXPECT_EQ(ask({{"op", "stats"}})["ok"], true);
}

TEST_F(AgentTest, RefusesClientsBeyondTheLimit) {
  o_.max_query_clients = 2;
  RunningAgent agent(o_);
  Fd a(connect_to(o_.query_socket)), b(connect_to(o_.query_socket));
  std::this_thread::sleep_for(50ms);
  Fd c(connect_to(o_.query_socket));
  char buf[256] = {};
  ASSERT_GT(::recv(c.get(), buf, sizeof buf - 1, 0), 0);
  EXPECT_STREQ(buf, "{\"v\":1,\"ok\":false,\"error\":\"too many query clients\"}\n");
}

TEST_F(AgentTest, RestoresTheMapFromItsStateDir) {
  o_.state_dir = dir_ / "state";
  std::filesystem::create_directories(o_.state_dir);
  {
    correlator::Correlator c;
    c.declare({1, 1, "vm1", "disk0", image_.string()});
    Mapping m;
    m.voffset = VirtualOffset{0};
    m.length = 1 << 20;
    m.device = DeviceId::from_major_minor(7, 9);
    m.sector = PhysicalSector{2048};
    m.confidence = 1;
    c.mutable_map().map({VmId{1}, VdiskId{1}}, m);
    correlator::save_snapshot(c, o_.state_dir / "map.snap");
  }
  {
    RunningAgent agent(o_);
    const auto map = ask({{"op", "map"}, {"vm", "vm1"}, {"offset", 4096}, {"length", 4096}});
    ASSERT_EQ(map["vdisks"][0]["extents"].size(), 1u);
    EXPECT_EQ(map["vdisks"][0]["extents"][0]["sector"], 2048 + 8);
    EXPECT_EQ(map["vdisks"][0]["extents"][0]["device"], "7:9");
    const auto who = ask({{"op", "whose"}, {"device", "7:9"}, {"sector", 2050}});
    EXPECT_EQ(who["owner"]["vm"], "vm1");
    EXPECT_EQ(who["owner"]["voffset"], 1024);
    EXPECT_EQ(ask({{"op", "stats"}})["agent"]["restored_extents"], 1);
    // A vdisk that comes back keeps its ids, so its restored extents stay its own.
    vfilter::AgentSink sink(sink_options());
    sink.declare({5, 5, "vm1", "disk0", image_.string()});
    ASSERT_TRUE(eventually([](const json& s) { return s["agent"]["exports_connected"] == 1; }));
    EXPECT_EQ(ask({{"op", "vms"}})["vms"][0]["vdisks"][0]["vdisk_id"], 1);
    EXPECT_EQ(ask({{"op", "vm_remove"}, {"vm", "vm1"}})["removed"], "vm1");
    EXPECT_EQ(error_of({{"op", "map"}, {"vm", "vm1"}}), "unknown vm 'vm1' (the agent knows: none)");
  }
  // The event log tells what happened.
  std::ifstream log(o_.state_dir / "events.log");
  std::string all((std::istreambuf_iterator<char>(log)), {});
  EXPECT_NE(all.find("vdisk vm1/disk0 dropped (1 extents): removed by request"), std::string::npos)
      << all;
}

}  // namespace
}  // namespace v2p::agent
