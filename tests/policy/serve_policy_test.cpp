// `v2p serve --policy`: the sample heat reporter loaded into the real binary while qemu-io
// writes, broken policies refused with their one line, and the --policy-arg order rule.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <fstream>

#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "vfilter/test_server.hpp"

namespace v2p::policy {
namespace {

using vfilter::testing::eventually;

std::string v2p_binary() {
  const char* b = std::getenv("V2P_BINARY");
  return b != nullptr ? b : "v2p";
}

// Runs `v2p serve ARGS` until `done(line)` holds for some output line or it exits.
struct Serve {
  explicit Serve(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {v2p_binary(), "serve"};
    argv.insert(argv.end(), args.begin(), args.end());
    child = std::make_unique<ChildProcess>(argv);
  }
  bool wait_for(const std::string& needle) {
    return eventually([&] {
             for (auto& l : child->read_lines()) lines.push_back(std::move(l));
             for (const auto& l : lines) {
               if (l.find(needle) != std::string::npos) return true;
             }
             return child->exited();
           }) &&
           contains(needle);
  }
  [[nodiscard]] bool contains(const std::string& needle) const {
    for (const auto& l : lines) {
      if (l.find(needle) != std::string::npos) return true;
    }
    return false;
  }
  [[nodiscard]] std::string output() const {
    std::string s;
    for (const auto& l : lines) s += l + "\n";
    return s;
  }
  int finish() {
    eventually([&] {
      for (auto& l : child->read_lines()) lines.push_back(std::move(l));
      return child->exited();
    });
    for (auto& l : child->read_lines()) lines.push_back(std::move(l));
    return child->exit_code();
  }
  std::unique_ptr<ChildProcess> child;
  std::vector<std::string> lines;
};

TEST(ServePolicy, HeatReporterPrintsTheWrittenExtent) {
  V2P_REQUIRE_TOOLS("qemu-io");
  vfilter::testing::TempDir dir;
  const auto image = dir.path() / "disk0.raw";
  const auto sock = dir.path() / "s.sock";
  vfilter::testing::make_image(image, 64 << 20);
  Serve serve({"--image", image.string(), "--vm", "vm1", "--vdisk", "disk0", "--socket",
               sock.string(), "--policy", V2P_TEST_HEAT_REPORTER, "--policy-arg", "every=1",
               "--policy-arg", "top=2", "--policy-tick-ms", "50"});
  ASSERT_TRUE(serve.wait_for("v2p serve: ready")) << serve.output();
  EXPECT_TRUE(serve.contains("v2p serve: policy heat-reporter loaded from")) << serve.output();
  const auto w = run_command({"qemu-io", "-f", "raw", "-c", "write 32M 1M", "-c", "write 32M 4k",
                              "nbd+unix:///disk0?socket=" + sock.string()});
  ASSERT_EQ(w.exit_code, 0) << w.err;
  // Two writes on the extent at 32 MiB: heat just under 2 once decayed a little.
  ASSERT_TRUE(serve.wait_for("policy heat-reporter: heat vm1: total 2.00, hottest disk0@32MiB="))
      << serve.output();
  serve.child->terminate(SIGTERM);
  EXPECT_EQ(serve.finish(), 0) << serve.output();
  EXPECT_TRUE(serve.contains("v2p serve: policies: 1 live, 0 unloaded")) << serve.output();
}

TEST(ServePolicy, PoliciesFromTheConfigFileLoadBeforeTheCommandLines) {
  vfilter::testing::TempDir dir;
  vfilter::testing::make_image(dir.path() / "swap.raw", 1 << 20);
  {
    std::ofstream cfg(dir.path() / "host.json");
    cfg << R"({"socket": "s.sock", "policy_tick_ms": 20,
               "vms": [{"name": "vm1", "vdisks": [{"name": "swap", "image": "swap.raw"}]}],
               "policies": [{"file": ")"
        << V2P_TEST_NO_SWAP_CACHE << R"(", "args": {"vdisk": "swap"}}]})";
  }
  Serve serve({"--config", (dir.path() / "host.json").string(), "--policy",
               V2P_TEST_PASSTHRU_POLICY, "--policy-arg", "report_every=2"});
  ASSERT_TRUE(serve.wait_for("policy passthru: saw 0 requests")) << serve.output();
  serve.child->terminate(SIGTERM);
  EXPECT_EQ(serve.finish(), 0) << serve.output();
  const auto first = serve.output().find("policy no-swap-cache loaded from");
  const auto second = serve.output().find("policy passthru loaded from");
  ASSERT_NE(first, std::string::npos) << serve.output();
  ASSERT_NE(second, std::string::npos) << serve.output();
  EXPECT_LT(first, second);
  EXPECT_TRUE(serve.contains("v2p serve: policies: 2 live, 0 unloaded")) << serve.output();
}

TEST(ServePolicy, ABrokenPolicyStopsServeWithOneLine) {
  vfilter::testing::TempDir dir;
  const auto image = dir.path() / "d.raw";
  vfilter::testing::make_image(image, 1 << 20);
  const std::vector<std::string> base = {"--image", image.string(), "--socket",
                                         (dir.path() / "s.sock").string()};
  auto with = [&](std::vector<std::string> extra) {
    auto args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    Serve s(args);
    const int rc = s.finish();
    return std::make_pair(rc, s.output());
  };
  const auto abi = with({"--policy", V2P_TEST_WRONG_ABI_POLICY});
  EXPECT_EQ(abi.first, 1);
  EXPECT_NE(abi.second.find("was built for SDK ABI 3, this v2p has ABI 2; rebuild it against "
                            "v2p 0.1"),
            std::string::npos)
      << abi.second;
  EXPECT_EQ(abi.second.find("ready"), std::string::npos);
  const auto early = with({"--policy-arg", "vdisk=swap", "--policy", V2P_TEST_NO_SWAP_CACHE});
  EXPECT_EQ(early.first, 1);
  EXPECT_NE(early.second.find("comes before any --policy"), std::string::npos) << early.second;
  // Each --policy-arg goes to the --policy before it: here the passthru policy gets vdisk=swap.
  const auto order = with({"--policy", V2P_TEST_NO_SWAP_CACHE, "--policy-arg", "vdisk=swap",
                           "--policy", V2P_TEST_PASSTHRU_POLICY, "--policy-arg", "vdisk=swap"});
  EXPECT_EQ(order.first, 1);
  EXPECT_NE(order.second.find("refused its arguments: unknown argument 'vdisk' (known: "
                              "report_every)"),
            std::string::npos)
      << order.second;
}

}  // namespace
}  // namespace v2p::policy
