// The tier policy as a policy author would run it: `v2p serve --no-tier-autopilot --policy
// libv2p_tier_policy.so`, so only the SDK path (PolicyContext::heat and ::tier) decides. Hot
// reads must get their extent promoted, which `v2p tier status --json` then reports.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/sparse_image.hpp"
#include "common/subprocess.hpp"
#include "common/test_skip.hpp"

namespace v2p {
namespace {

TEST(TierSdkPolicy, TheLoadedPolicyPromotesAHotExtentThroughTierControl) {
  const char* bin = std::getenv("V2P_BINARY");
  if (bin == nullptr || !std::filesystem::exists(bin))
    V2P_SKIP_MACHINE("V2P_BINARY not set (run through ctest)");
  V2P_REQUIRE_TOOLS("qemu-io");
  const auto dir =
      std::filesystem::temp_directory_path() / ("v2p-tier-sdk-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  struct Cleanup {
    std::filesystem::path d;
    ~Cleanup() { std::filesystem::remove_all(d); }
  } cleanup{dir};
  create_sparse_image(dir / "img.raw", 64ULL << 20, false);
  const auto fast = dir / "fast.img";
  ChildProcess serve({bin,
                      "serve",
                      "--image",
                      (dir / "img.raw").string(),
                      "--vm",
                      "vm1",
                      "--vdisk",
                      "d0",
                      "--socket",
                      (dir / "s.sock").string(),
                      "--tier-fast",
                      fast.string(),
                      "--tier-fast-size",
                      "16M",
                      "--tier-extent",
                      "1M",
                      "--no-tier-autopilot",
                      "--policy",
                      V2P_TIER_POLICY_SO,
                      "--policy-arg",
                      "promote_heat=2",
                      "--policy-tick-ms",
                      "100"});
  std::string log;
  bool ready = false;
  for (int i = 0; i < 600 && !ready && !serve.exited(); ++i) {
    for (const auto& l : serve.read_lines()) {
      log += l + "\n";
      ready = ready || l == "v2p serve: ready";
    }
    if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(ready) << log;
  EXPECT_NE(log.find("decided by loaded policies"), std::string::npos) << log;
  const std::string uri = "nbd+unix:///d0?socket=" + (dir / "s.sock").string();
  const auto w = run_command({"qemu-io", "-f", "raw", "-c", "write -P 0x5a 3M 1M", uri});
  ASSERT_EQ(w.exit_code, 0) << w.err;
  const auto promoted_count = [&](nlohmann::json& status) -> std::uint64_t {
    const auto st = run_command({bin, "tier", "status", fast.string(), "--json"});
    EXPECT_EQ(st.exit_code, 0) << st.err;
    status = nlohmann::json::parse(st.out);
    return status.at(0).at("promoted").get<std::uint64_t>();
  };
  // One write is below promote_heat=2: nothing moves until the reads make the extent hot.
  nlohmann::json status;
  EXPECT_EQ(promoted_count(status), 0U) << status.dump(2);
  bool promoted = false;
  for (int round = 0; round < 100 && !promoted; ++round) {
    const auto r = run_command({"qemu-io", "-f", "raw", "-c", "read -P 0x5a 3M 1M", uri});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_EQ(r.out.find("Pattern verification failed"), std::string::npos) << r.out;
    promoted = promoted_count(status) > 0;
    if (!promoted) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(promoted) << status.dump(2);
  serve.terminate(SIGTERM);
  for (int i = 0; i < 200 && !serve.exited(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (const auto& l : serve.read_lines()) log += l + "\n";
  EXPECT_NE(log.find("policies: 1 live, 0 unloaded"), std::string::npos) << log;
}

}  // namespace
}  // namespace v2p
