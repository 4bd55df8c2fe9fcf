// The policy host: the loader against deliberately broken plug-ins, and a well-behaved policy
// driven by a real vfilter Server that qemu-io writes to. The policies narrate every call
// through PolicyContext::log, which these tests capture.
#include "policy/host/policy_host.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <mutex>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "policy/host/record_tee.hpp"
#include "vfilter/test_server.hpp"

namespace v2p::policy {
namespace {

using vfilter::testing::eventually;

// Log lines of a host, captured (the host logs from its thread and from load()).
struct Log {
  std::mutex mu;
  std::vector<std::string> lines;
  std::function<void(std::string_view)> sink() {
    return [this](std::string_view l) {
      const std::lock_guard lk(mu);
      lines.emplace_back(l);
    };
  }
  std::vector<std::string> starting_with(const std::string& prefix) {
    const std::lock_guard lk(mu);
    std::vector<std::string> out;
    for (const auto& l : lines) {
      if (l.rfind(prefix, 0) == 0) out.push_back(l);
    }
    return out;
  }
  std::vector<std::string> all() {
    const std::lock_guard lk(mu);
    return lines;
  }
};

HostOptions options(Log& log, std::uint64_t tick_ms = 1000) {
  HostOptions o;
  o.log = log.sink();
  o.tick_ns = tick_ms * 1'000'000;
  return o;
}

std::string load_error(const char* file, PolicyArgs args = {}) {
  Log log;
  PolicyHost host(options(log));
  try {
    host.load({file, std::move(args)});
  } catch (const Error& e) {
    return e.what();
  }
  return "loaded";
}

std::string filename(const char* path) {
  return std::filesystem::path(path).filename().string();
}

TEST(PolicyLoader, RefusesAnotherAbiBeforeCallingAnything) {
  // The policy's create() aborts: the check must come first.
  EXPECT_EQ(load_error(V2P_TEST_WRONG_ABI_POLICY),
            "policy " + filename(V2P_TEST_WRONG_ABI_POLICY) +
                " was built for SDK ABI 3, this v2p has ABI 2; rebuild it against v2p 0.1");
}

TEST(PolicyLoader, RefusesAMissingEntryPoint) {
  EXPECT_EQ(load_error(V2P_TEST_MISSING_SYMBOL_POLICY),
            "policy " + filename(V2P_TEST_MISSING_SYMBOL_POLICY) +
                " does not export v2p_policy_destroy: build it with V2P_POLICY(ClassName) from "
                "<v2p/policy.hpp>");
}

TEST(PolicyLoader, RefusesWhatIsNotASharedObject) {
  const std::string e = load_error(__FILE__);
  EXPECT_EQ(e.rfind("cannot load policy host_test.cpp: ", 0), 0u) << e;
  EXPECT_EQ(load_error("/nonexistent/p.so").rfind("cannot load policy p.so: ", 0), 0u);
}

TEST(PolicyLoader, AConstructorExceptionBecomesTheError) {
  EXPECT_EQ(load_error(V2P_TEST_THROWING_CTOR_POLICY, {{"size", "abc"}}),
            "policy " + filename(V2P_TEST_THROWING_CTOR_POLICY) +
                " refused its arguments: size must be a number, got 'abc'");
}

TEST(PolicyLoader, ArgumentsArriveInOrderAndTheNameIsThePolicys) {
  Log log;
  {
    PolicyHost host(options(log));
    EXPECT_EQ(host.load({V2P_TEST_PROBE_POLICY, {{"b", "2"}, {"a", "x=y"}, {"b", "3"}}}), "probe");
    EXPECT_EQ(host.policy_names(), std::vector<std::string>{"probe"});
  }
  const auto lines = log.all();
  ASSERT_EQ(lines.size(), 2u);
  // Until the constructor returns, the policy has no name yet: its lines carry the file's.
  EXPECT_EQ(lines[0], "policy " + filename(V2P_TEST_PROBE_POLICY) +
                          ": created args=b=2;a=x=y;b=3; cache=none tier=none");
  EXPECT_EQ(lines[1], "policy probe: destroyed");
}

TEST(PolicyLoader, MechanismsRegisteredBeforeLoadAreVisibleToTheConstructor) {
  Log log;
  // The policy only compares the pointer with null; the classes belong to the cache and tier.
  int stand_in = 0;
  {
    PolicyHost host(options(log));
    host.set_cache(reinterpret_cast<CacheControl*>(&stand_in));
    host.load({V2P_TEST_PROBE_POLICY, {}});
  }
  ASSERT_FALSE(log.all().empty());
  EXPECT_NE(log.all()[0].find(" cache=set tier=none"), std::string::npos) << log.all()[0];
}

TEST(PolicyLoader, SamplesValidateTheirArguments) {
  EXPECT_NE(load_error(V2P_TEST_NO_SWAP_CACHE).find("give at least one vdisk=PATTERN"),
            std::string::npos);
  EXPECT_NE(load_error(V2P_TEST_HEAT_REPORTER, {{"every", "0"}}).find("every must be a positive"),
            std::string::npos);
  EXPECT_NE(load_error(V2P_TEST_PASSTHRU_POLICY, {{"colour", "red"}}).find("unknown argument"),
            std::string::npos);
  EXPECT_EQ(load_error(V2P_TEST_PASSTHRU_POLICY, {{"report_every", "3"}}), "loaded");
}

// A vfilter Server whose records go through the host's tee (and on to a QueueSink, standing in
// for the record file).
struct ServedHost {
  explicit ServedHost(PolicyHost& host) : tee(host, &queue) {
    image = dir.path() / "disk0.raw";
    socket = dir.path() / "nbd.sock";
    vfilter::testing::make_image(image, 16 << 20);
    vfilter::ServerConfig c;
    c.vdisks = {vfilter::image_vdisk("vm1", "disk0", image)};
    c.unix_socket = socket;
    server = vfilter::Server::start(c, &tee);
  }
  [[nodiscard]] CommandResult qemu_io(const std::vector<std::string>& commands,
                                      const std::string& cache = "writethrough") const {
    std::vector<std::string> argv = {"qemu-io", "-f", "raw", "-t", cache};
    for (const auto& c : commands) argv.insert(argv.end(), {"-c", c});
    argv.push_back("nbd+unix:///disk0?socket=" + socket.string());
    return run_command(argv);
  }
  vfilter::testing::TempDir dir;
  std::filesystem::path image, socket;
  vfilter::QueueSink queue;
  RecordTee tee;
  std::unique_ptr<vfilter::Server> server;
};

#define REQUIRE_QEMU_IO() V2P_REQUIRE_TOOLS("qemu-io")

TEST(PolicyHost, DeliversEveryRequestWithHeatAndNamesThenTicksInOrder) {
  REQUIRE_QEMU_IO();
  Log log;
  std::size_t records = 0;
  std::uint64_t requests = 0;
  {
    PolicyHost host(options(log, 10));
    host.load({V2P_TEST_PROBE_POLICY, {}});
    host.start();
    ServedHost served(host);
    // Write-back (-t): no FUA, so each guest request is one host I/O, plus the flush at close.
    const auto r =
        served.qemu_io({"write -P 0xab 0 64k", "write -P 0xcd 4M 4k", "read 0 64k"}, "writeback");
    ASSERT_EQ(r.exit_code, 0) << r.err;
    served.server->stop();
    requests = served.server->stats().requests;
    records = served.queue.drain().size();
    ASSERT_TRUE(eventually([&] { return host.stats().ticks >= 2; }));
    host.stop();  // delivers what is queued
    EXPECT_EQ(host.stats().events, records);
    EXPECT_EQ(host.stats().dropped_events, 0u);
  }
  const auto lines = log.all();
  ASSERT_GE(lines.size(), 2u);
  EXPECT_EQ(lines.front().rfind("policy " + filename(V2P_TEST_PROBE_POLICY) + ": created", 0), 0u);
  EXPECT_EQ(lines.back(), "policy probe: destroyed");
  const auto ios = log.starting_with("policy probe: io ");
  EXPECT_EQ(ios.size(), records);
  // Every request the server served reached on_io, except NBD_CMD_DISC (no I/O behind it).
  EXPECT_EQ(records + 1, requests) << [&] {
    std::string s;
    for (const auto& l : ios) s += l + "\n";
    return s;
  }();
  const auto count_op = [&](const char* op) {
    return std::count_if(ios.begin(), ios.end(),
                         [&](const std::string& l) { return l.find(op) != std::string::npos; });
  };
  EXPECT_EQ(count_op(" op=1 "), 2);  // the writes
  EXPECT_EQ(count_op(" op=0 "), 1);  // the read
  EXPECT_EQ(count_op(" op=2 "), 1);  // the flush when qemu-io closes
  EXPECT_GE(log.starting_with("policy probe: tick ").size(), 2u);
  // The first write: named, fed to the heat map before on_io (heat >= 1), latency recorded.
  const auto first_write = std::find_if(ios.begin(), ios.end(), [](const std::string& l) {
    return l.find(" op=1 ") != std::string::npos && l.find(" off=0 ") != std::string::npos;
  });
  ASSERT_NE(first_write, ios.end());
  EXPECT_NE(first_write->find("vm=vm1 vdisk=disk0 named=vm1/disk0"), std::string::npos)
      << *first_write;
  EXPECT_NE(first_write->find(" len=65536 heat=1."), std::string::npos) << *first_write;
  EXPECT_EQ(first_write->find("latency_count=0"), std::string::npos) << *first_write;
  EXPECT_NE(first_write->find("physical=none"), std::string::npos);  // no probe, no map
  // The read of the same extent came after the write: its heat counts both.
  const auto read = std::find_if(ios.begin(), ios.end(), [](const std::string& l) {
    return l.find(" op=0 ") != std::string::npos;
  });
  ASSERT_NE(read, ios.end());
  const auto at = read->find(" heat=");
  ASSERT_NE(at, std::string::npos);
  const double heat = std::stod(read->substr(at + 6));
  EXPECT_GT(heat, 1.9) << *read;  // 1 decayed over milliseconds (half-life 60 s), plus 1
  EXPECT_LE(heat, 2.0) << *read;
}

TEST(PolicyHost, AThrowingHookIsReportedOnceAndUnloadedWhileIoGoesOn) {
  REQUIRE_QEMU_IO();
  Log log;
  {
    PolicyHost host(options(log));
    host.load({V2P_TEST_THROWING_HOOK_POLICY, {{"hook", "on_io"}}});
    host.load({V2P_TEST_PROBE_POLICY, {}});
    host.start();
    ServedHost served(host);
    ASSERT_EQ(served.qemu_io({"write 0 4k"}).exit_code, 0);
    ASSERT_TRUE(eventually([&] { return host.stats().unloaded == 1; }));
    const auto again = served.qemu_io({"write -P 0x11 1M 4k", "read -P 0x11 1M 4k"});
    ASSERT_EQ(again.exit_code, 0) << again.err;
    EXPECT_EQ(again.out.find("failed"), std::string::npos) << again.out;
    served.server->stop();
    const auto records = served.queue.drain().size();
    host.stop();
    const auto st = host.stats();
    EXPECT_EQ(st.loaded, 1u);
    EXPECT_EQ(st.unloaded, 1u);
    EXPECT_EQ(host.policy_names(), std::vector<std::string>{"probe"});
    // The other policy saw every request, before and after the unload.
    EXPECT_EQ(log.starting_with("policy probe: io ").size(), records);
  }
  const auto reports = log.starting_with("policy thrower (");
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0], "policy thrower (" + filename(V2P_TEST_THROWING_HOOK_POLICY) +
                            ") threw from on_io: deliberate failure in on_io; unloaded, serving "
                            "goes on");
  EXPECT_EQ(log.starting_with("policy thrower: destroyed").size(), 1u);
}

TEST(PolicyHost, AThrowingTickUnloadsWithoutAnyIo) {
  Log log;
  PolicyHost host(options(log, 5));
  host.load({V2P_TEST_THROWING_HOOK_POLICY, {{"hook", "on_tick"}}});
  host.start();
  ASSERT_TRUE(eventually([&] { return host.stats().unloaded == 1; }));
  EXPECT_EQ(host.stats().loaded, 0u);
  EXPECT_EQ(log.starting_with("policy thrower (").size(), 1u);
}

IoEvent miss_on(std::string_view vdisk_name) {
  IoEvent e;
  e.vdisk_name = vdisk_name;
  e.op = IoOp::kRead;
  e.length = 4096;
  return e;
}

TEST(PolicyHost, AdmissionAsksPoliciesInLoadOrderUntilOneDecides) {
  Log log;
  PolicyHost host(options(log));
  host.load({V2P_TEST_PROBE_POLICY, {}});  // kAdmit for "probe-admit" only
  host.load({V2P_TEST_NO_SWAP_CACHE, {{"vdisk", "swap"}, {"vdisk", "tmp*"}}});
  host.start();
  EXPECT_EQ(host.admit(miss_on("probe-admit")), Admission::kAdmit);
  EXPECT_EQ(host.admit(miss_on("swap")), Admission::kBypass);
  EXPECT_EQ(host.admit(miss_on("tmp-build")), Admission::kBypass);
  EXPECT_EQ(host.admit(miss_on("swap2")), Admission::kDefault);
  EXPECT_EQ(host.admit(miss_on("disk0")), Admission::kDefault);
}

TEST(PolicyHost, AThrowingAdmitIsUnloadedByThePolicyThread) {
  Log log;
  PolicyHost host(options(log));
  host.load({V2P_TEST_THROWING_HOOK_POLICY, {{"hook", "admit"}}});
  host.start();
  EXPECT_EQ(host.admit(miss_on("d")), Admission::kDefault);
  EXPECT_EQ(host.admit(miss_on("d")), Admission::kDefault);  // not asked again
  ASSERT_TRUE(eventually([&] { return host.stats().unloaded == 1; }));
  const auto reports = log.starting_with("policy thrower (");
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_NE(reports[0].find("threw from admit: deliberate failure in admit"), std::string::npos);
}

TEST(PolicyHost, MapChangesUpdateTheReplicaBeforeTheHookAndPlaceLaterIo) {
  Log log;
  PolicyHost host(options(log));
  host.load({V2P_TEST_PROBE_POLICY, {}});
  host.start();
  const VdiskKey key{VmId{1}, VdiskId{1}};
  MapChange c;
  c.kind = MapChangeKind::kMapped;
  c.vdisk = key;
  c.voffset = VirtualOffset{0};
  c.length = 1 << 20;
  c.device = DeviceId::from_major_minor(8, 0);
  c.sector = PhysicalSector{2048};
  c.generation = 1;
  host.map_changed(c);
  ASSERT_TRUE(eventually([&] { return host.stats().map_changes == 1; }));
  ContextRecord r;
  r.vm_id = 1;
  r.vdisk_id = 1;
  r.voffset = 8192;
  r.length = 4096;
  r.op = static_cast<std::uint8_t>(IoOp::kWrite);
  r.submit_ns = 100;
  r.complete_ns = 300;
  host.publish(r);
  c.kind = MapChangeKind::kUnmapped;
  c.length = 4096;
  host.map_changed(c);
  host.stop();
  const auto maps = log.starting_with("policy probe: map ");
  ASSERT_EQ(maps.size(), 2u);
  EXPECT_EQ(maps[0], "policy probe: map kind=0 off=0 len=1048576 mapped_bytes=1048576");
  EXPECT_EQ(maps[1], "policy probe: map kind=2 off=0 len=4096 mapped_bytes=1044480");
  const auto ios = log.starting_with("policy probe: io ");
  ASSERT_EQ(ios.size(), 1u);
  EXPECT_NE(ios[0].find("physical=2064"), std::string::npos) << ios[0];  // 2048 + 8192/512
}

}  // namespace
}  // namespace v2p::policy
