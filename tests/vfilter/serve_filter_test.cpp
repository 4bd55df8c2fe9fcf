// `v2p serve --filter`: the passthru sample loaded into the real binary while qemu-io writes,
// stacked over the flash cache over the tier over the image; filters from the config file; a
// wrong-ABI filter refused with its one line before anything listens.
#include <fmt/core.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "vfilter/test_server.hpp"

namespace v2p::vfilter {
namespace {

// Runs `v2p serve args…`, waits for ready, runs `during`, stops it; returns all its lines.
std::string serve(const std::vector<std::string>& args, const std::function<void()>& during) {
  std::vector<std::string> argv{std::getenv("V2P_BINARY"), "serve"};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess child(argv);
  std::string seen;
  bool ready = false;
  testing::eventually([&] {
    for (const auto& l : child.read_lines()) {
      seen += l + "\n";
      ready = ready || l == "v2p serve: ready";
    }
    return ready || child.exited();
  });
  if (!ready) {
    ADD_FAILURE() << "v2p serve did not become ready:\n" << seen;
    return seen;
  }
  during();
  child.terminate(SIGTERM);
  testing::eventually([&] { return child.exited(); });
  for (const auto& l : child.read_lines()) seen += l + "\n";
  EXPECT_EQ(child.exit_code(), 0) << seen;
  return seen;
}

void qemu_io(const std::string& uri, const std::vector<std::string>& commands) {
  std::vector<std::string> argv{"qemu-io", "-f", "raw"};
  for (const auto& c : commands) {
    argv.push_back("-c");
    argv.push_back(c);
  }
  argv.push_back(uri);
  const auto q = run_command(argv);
  EXPECT_EQ(q.exit_code, 0) << q.err;
  EXPECT_EQ(q.out.find("Pattern verification failed"), std::string::npos) << q.out;
}

// V2P_BINARY is set by CTest; a run by hand without it cannot start `v2p serve`.
#define V2P_REQUIRE_SERVE_AND_QEMU_IO()                                             \
  do {                                                                              \
    if (std::getenv("V2P_BINARY") == nullptr) GTEST_FAIL() << "V2P_BINARY not set"; \
    V2P_REQUIRE_TOOLS("qemu-io");                                                   \
  } while (0)

TEST(ServeFilter, PassthruOverCacheOverTierOverImage) {
  V2P_REQUIRE_SERVE_AND_QEMU_IO();
  testing::TempDir dir;
  const auto image = dir.path() / "disk0.raw";
  testing::make_image(image, 32 << 20);
  const auto sock = dir.path() / "s.sock";
  const std::string uri = "nbd+unix:///disk0?socket=" + sock.string();
  const auto out =
      serve({"--image", image.string(), "--vm", "vm1", "--socket", sock.string(), "--filter",
             V2P_TEST_PASSTHRU_FILTER, "--cache", (dir.path() / "c.bin").string(), "--cache-size",
             "16M", "--tier-fast", (dir.path() / "fast.tier").string(), "--tier-fast-size", "8M"},
            [&] {
              qemu_io(uri, {"write -P 0x5a 0 4M", "read -P 0x5a 0 4M"});
              qemu_io(uri, {"read -P 0x5a 0 4M", "read -P 0x5a 0 4M"});
            });
  EXPECT_NE(out.find("v2p serve: filter passthru loaded from"), std::string::npos) << out;
  EXPECT_NE(out.find("v2p serve: stack of vdisk disk0: passthru -> cache -> tier -> image "),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("v2p serve: tiering disk0: fast tier"), std::string::npos) << out;
  EXPECT_NE(out.find("v2p serve: cache over a tier: entries last for this run only"),
            std::string::npos)
      << out;
  // The cache served the repeated reads: the stages really stack.
  const auto stats = out.find("v2p serve: cache vm vm1: ");
  ASSERT_NE(stats, std::string::npos) << out;
  EXPECT_EQ(out.find("cache vm vm1: 0 hits"), std::string::npos) << out;
  // The filter saw every request, and its per-vdisk state reported at close.
  EXPECT_NE(out.find("v2p serve: filter passthru: vdisk disk0: "), std::string::npos) << out;
  EXPECT_EQ(out.find("passthru: vdisk disk0: 0 reads"), std::string::npos) << out;
}

TEST(ServeFilter, FiltersFromTheConfigFile) {
  V2P_REQUIRE_SERVE_AND_QEMU_IO();
  testing::TempDir dir;
  const auto image = dir.path() / "disk0.raw";
  testing::make_image(image, 8 << 20);
  const auto sock = dir.path() / "s.sock";
  const auto config = dir.path() / "serve.json";
  std::ofstream(config) << fmt::format(
      R"({{"socket": "{}", "vms": [{{"name": "vm1", "vdisks": [{{"name": "disk0",
          "image": "{}"}}]}}], "filters": [{{"file": "{}"}}]}})",
      sock.string(), image.string(), V2P_TEST_PASSTHRU_FILTER);
  const auto out = serve({"--config", config.string()}, [&] {
    qemu_io("nbd+unix:///disk0?socket=" + sock.string(), {"write -P 7 0 64k", "read -P 7 0 64k"});
  });
  EXPECT_NE(out.find("v2p serve: stack of vdisk disk0: passthru -> image "), std::string::npos)
      << out;
  EXPECT_NE(out.find("filter passthru: vdisk disk0: 1 reads, 1 writes"), std::string::npos) << out;
}

TEST(ServeFilter, RefusedFiltersStopServeWithOneLine) {
  if (std::getenv("V2P_BINARY") == nullptr) GTEST_FAIL() << "V2P_BINARY not set";
  testing::TempDir dir;
  const auto image = dir.path() / "disk0.raw";
  testing::make_image(image, 8 << 20);
  const auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv{
        std::getenv("V2P_BINARY"),       "serve", "--image", image.string(), "--socket",
        (dir.path() / "s.sock").string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run_command(argv);
  };
  const auto abi = with({"--filter", V2P_TEST_WRONG_ABI_FILTER});
  EXPECT_EQ(abi.exit_code, 1);
  EXPECT_NE(abi.err.find("was built for SDK ABI 3, this v2p has ABI 2; rebuild it against v2p "
                         "0.1"),
            std::string::npos)
      << abi.err;
  EXPECT_EQ(abi.out.find("ready"), std::string::npos);
  const auto early = with({"--filter-arg", "a=b", "--filter", V2P_TEST_PASSTHRU_FILTER});
  EXPECT_EQ(early.exit_code, 1);
  EXPECT_NE(early.err.find("comes before any --filter"), std::string::npos) << early.err;
  const auto args = with({"--filter", V2P_TEST_PASSTHRU_FILTER, "--filter-arg", "x=1"});
  EXPECT_EQ(args.exit_code, 1);
  EXPECT_NE(args.err.find("refused its arguments: unknown argument 'x'"), std::string::npos)
      << args.err;
}

TEST(ServeFilter, QosPacesEachVm) {
  V2P_REQUIRE_SERVE_AND_QEMU_IO();
  testing::TempDir dir;
  const auto image = dir.path() / "disk0.raw";
  testing::make_image(image, 8 << 20);
  const auto sock = dir.path() / "s.sock";
  std::vector<std::string> reads;
  for (int i = 0; i < 40; ++i) reads.push_back("read " + std::to_string(i * 4096) + " 4k");
  std::chrono::duration<double> took{};
  const auto out = serve({"--image", image.string(), "--vm", "vm1", "--socket", sock.string(),
                          "--filter", V2P_TEST_QOS_FILTER, "--filter-arg", "iops=100"},
                         [&] {
                           const auto t0 = std::chrono::steady_clock::now();
                           qemu_io("nbd+unix:///disk0?socket=" + sock.string(), reads);
                           took = std::chrono::steady_clock::now() - t0;
                         });
  // 40 requests at 100 per second cannot finish in less than 39 intervals of 10 ms; a lower
  // bound only, which a loaded machine cannot break.
  EXPECT_GE(took.count(), 0.39) << out;
  EXPECT_NE(out.find("v2p serve: filter qos: vm vm1: "), std::string::npos) << out;
  EXPECT_EQ(out.find(" 0 delayed"), std::string::npos) << out;
  const auto bad =
      run_command({std::getenv("V2P_BINARY"), "serve", "--image", image.string(), "--socket",
                   sock.string(), "--filter", V2P_TEST_QOS_FILTER, "--filter-arg", "iops=fast"});
  EXPECT_NE(bad.err.find("iops='fast': expected a number"), std::string::npos) << bad.err;
}

// Unmounts (and so frees) a small tmpfs the test fills to make the mirror fail.
struct SmallTmpfs {
  explicit SmallTmpfs(std::filesystem::path at) : path(std::move(at)) {
    std::filesystem::create_directories(path);
    mounted = run_command({"mount", "-t", "tmpfs", "-o", "size=1M", "v2p-test", path.string()})
                  .exit_code == 0;
  }
  ~SmallTmpfs() {
    if (mounted) run_command({"umount", "-l", path.string()});
  }
  std::filesystem::path path;
  bool mounted = false;
};

TEST(ServeFilter, MirrorReportsAFailedMirrorAndResyncsIt) {
  V2P_REQUIRE_SERVE_AND_QEMU_IO();
  V2P_REQUIRE_ROOT("mounts a small tmpfs to fill");
  testing::TempDir dir;
  const auto image = dir.path() / "disk0.raw";
  testing::make_image(image, 8 << 20);
  SmallTmpfs fs(dir.path() / "replica");
  if (!fs.mounted) V2P_SKIP_MACHINE("cannot mount tmpfs here");
  const auto sock = dir.path() / "s.sock";
  const std::string uri = "nbd+unix:///disk0?socket=" + sock.string();
  const auto mirror = fs.path / "disk0.raw";
  const auto filler = fs.path / "filler";
  const auto out = serve(
      {"--image", image.string(), "--vm", "vm1", "--socket", sock.string(), "--filter",
       V2P_TEST_MIRROR_FILTER, "--filter-arg", "mirror=" + (fs.path / "{vdisk}.raw").string()},
      [&] {
        qemu_io(uri, {"write -P 0x11 0 64k"});  // mirrored
        {
          std::ofstream fill(filler, std::ios::binary);  // the mirror's fs is now full
          const std::vector<char> block(4096, 'f');
          while (fill.write(block.data(), block.size())) fill.flush();
        }
        qemu_io(uri, {"write -P 0x22 64k 256k", "read -P 0x22 64k 256k"});
        std::filesystem::remove(filler);
        qemu_io(uri, {"flush"});  // the mirror catches up
      });
  EXPECT_NE(out.find("filter mirror: vdisk disk0: mirror " + mirror.string() +
                     " failed (No space left on device)"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("mirror " + mirror.string() + " back in sync"), std::string::npos) << out;
  EXPECT_NE(out.find("mirror " + mirror.string() + " in sync, "), std::string::npos) << out;
  const auto primary = testing::read_file_range(image, 0, 320 << 10);
  EXPECT_EQ(testing::read_file_range(mirror, 0, 320 << 10), primary);
  EXPECT_EQ(primary[100 << 10], std::byte{0x22});
}

}  // namespace
}  // namespace v2p::vfilter
