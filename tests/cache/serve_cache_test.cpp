// `v2p serve --cache`: the flags build FileBackend -> CacheStage, the shutdown prints per-VM
// statistics and records the index, and the next start keeps the entries.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <random>
#include <thread>

#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "vfilter/nbd_test_client.hpp"

namespace v2p {
namespace {

// Runs `v2p serve args…`, waits for ready, runs `during`, stops it; returns all its lines.
std::string serve(const std::vector<std::string>& args, const std::function<void()>& during) {
  std::vector<std::string> argv{std::getenv("V2P_BINARY"), "serve"};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess child(argv);
  std::string seen;
  bool ready = false;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!ready && !child.exited() && std::chrono::steady_clock::now() < until) {
    for (const auto& l : child.read_lines()) {
      seen += l + "\n";
      ready = ready || l == "v2p serve: ready";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!ready) {
    ADD_FAILURE() << "v2p serve did not become ready:\n" << seen;
    return seen;
  }
  during();
  child.terminate(SIGINT);
  while (!child.exited()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  for (const auto& l : child.read_lines()) seen += l + "\n";
  EXPECT_EQ(child.exit_code(), 0) << seen;
  return seen;
}

TEST(ServeCache, FlagsPutTheCacheInFrontAndItsEntriesSurviveARestart) {
  if (std::getenv("V2P_BINARY") == nullptr)
    V2P_SKIP_MACHINE("V2P_BINARY not set (run through ctest)");
  V2P_REQUIRE_TOOLS("qemu-io");
  vfilter::testing::TempDir dir;
  const auto image = dir.path() / "img.raw";
  {
    std::mt19937_64 rng(3);
    std::vector<std::uint64_t> data((8 << 20) / 8);
    for (auto& w : data) w = rng();
    std::ofstream(image, std::ios::binary)
        .write(reinterpret_cast<const char*>(data.data()), 8 << 20);
  }
  const auto sock = dir.path() / "s.sock";
  const std::string uri = "nbd+unix:///img?socket=" + sock.string();
  const std::vector<std::string> args{
      "--image",      image.string(), "--vm",          "vmA",
      "--socket",     sock.string(),  "--cache",       (dir.path() / "c.bin").string(),
      "--cache-size", "16M",          "--cache-quota", "vmA=4M"};
  const auto first = serve(args, [&] {
    for (int pass = 0; pass < 3; ++pass) {
      const auto q = run_command({"qemu-io", "-f", "raw", "-c", "read 0 8M", uri});
      EXPECT_EQ(q.exit_code, 0) << q.err;
    }
  });
  EXPECT_NE(first.find("v2p serve: cache vm vmA: 64 hits"), std::string::npos) << first;
  EXPECT_NE(first.find("4194304 B resident"), std::string::npos) << "quota 4M: " << first;
  const auto second = serve({args.begin(), args.end() - 2}, [&] {
    const auto q = run_command({"qemu-io", "-f", "raw", "-c", "read 0 4M", uri});
    EXPECT_EQ(q.exit_code, 0) << q.err;
  });
  EXPECT_NE(second.find("64 entries kept"), std::string::npos) << second;
  EXPECT_NE(second.find("cache vm vmA: 64 hits, 0 misses"), std::string::npos) << second;
  // Bad settings are refused with a sentence.
  const auto bad = run_command({std::getenv("V2P_BINARY"), "serve", "--image", image.string(),
                                "--socket", sock.string(), "--cache-mode", "write-back"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE((bad.out + bad.err).find("need --cache FILE"), std::string::npos) << bad.out << bad.err;
}

}  // namespace
}  // namespace v2p
