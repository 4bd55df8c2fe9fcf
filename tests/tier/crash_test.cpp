// The crash loop: a child `v2p serve --tier-fast …` under a write load whose hot spot keeps
// moving (so the built-in policy promotes and demotes all the time) is killed with SIGKILL at a
// random moment, 24 times, and restarted on the same files. Writers record what the server
// acknowledged; after every restart every 4 KiB block must hold what was acknowledged last (or
// the one write in flight at the kill), and during the load each writer reads its blocks back.
#include <gtest/gtest.h>
#include <libnbd.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "policy/tier/tier_journal.hpp"
#include "policy/tier/tier_stage.hpp"
#include "tier_test_util.hpp"

namespace v2p::tier {
namespace {

constexpr std::uint64_t kBlock = 4096;
constexpr std::uint64_t kDisk = 32ULL << 20;
constexpr std::uint64_t kBlocks = kDisk / kBlock;
constexpr int kWriters = 4;
constexpr int kIterations = 24;

// Block content for generation `gen` (0 = never written = zeros): the block number and the
// generation in the first 16 bytes, then bytes derived from both.
void fill(std::uint64_t block, std::uint32_t gen, std::byte* out) {
  if (gen == 0) {
    std::memset(out, 0, kBlock);
    return;
  }
  std::mt19937_64 rng(block * 1'000'003ULL + gen);
  for (std::uint64_t i = 0; i < kBlock; i += 8) {
    const std::uint64_t v = rng();
    std::memcpy(out + i, &v, 8);
  }
  std::memcpy(out, &block, 8);
  std::memcpy(out + 8, &gen, 4);
}

struct Nbd {
  explicit Nbd(const std::string& uri) : h(nbd_create()) {
    if (h == nullptr || nbd_connect_uri(h, uri.c_str()) != 0) ok = false;
  }
  ~Nbd() { nbd_close(h); }
  nbd_handle* h;
  bool ok = true;
};

struct BlockState {
  std::uint32_t acked = 0;
  std::uint32_t pending = 0;  // a write sent, not yet acknowledged (0: none)
};

class CrashLoop : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* bin = std::getenv("V2P_BINARY");
    if (bin == nullptr || !std::filesystem::exists(bin))
      V2P_SKIP_MACHINE("V2P_BINARY not set (run through ctest)");
    binary_ = bin;
    dir_ = std::filesystem::path("/var/tmp") / ("v2p-tier-crash." + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    test::make_file(dir_ / "slow.raw", kDisk);
    uri_ = "nbd+unix:///disk0?socket=" + (dir_ / "s.sock").string();
  }
  void TearDown() override {
    server_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  void start_server() {
    std::filesystem::remove(dir_ / "s.sock");
    server_ = std::make_unique<ChildProcess>(std::vector<std::string>{binary_,
                                                                      "serve",
                                                                      "--image",
                                                                      (dir_ / "slow.raw").string(),
                                                                      "--vm",
                                                                      "vm1",
                                                                      "--vdisk",
                                                                      "disk0",
                                                                      "--socket",
                                                                      (dir_ / "s.sock").string(),
                                                                      "--tier-fast",
                                                                      (dir_ / "fast.tier").string(),
                                                                      "--tier-fast-size",
                                                                      "1M",
                                                                      "--tier-extent",
                                                                      "64k",
                                                                      "--tier-rate",
                                                                      "16M",
                                                                      "--tier-promote-heat",
                                                                      "3",
                                                                      "--tier-half-life",
                                                                      "0.5",
                                                                      "--tier-tick-ms",
                                                                      "30"});
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    std::string log;
    while (std::chrono::steady_clock::now() < deadline) {
      for (const auto& l : server_->read_lines()) {
        log += l + "\n";
        if (l == "v2p serve: ready") return;
      }
      ASSERT_FALSE(server_->exited()) << "v2p serve exited:\n" << log;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    FAIL() << "v2p serve not ready:\n" << log;
  }

  // Reads every block and checks it against what was acknowledged; a block holding the pending
  // generation makes that generation the acknowledged one (the write did land).
  void verify_all(int iteration) {
    Nbd c(uri_);
    ASSERT_TRUE(c.ok) << nbd_get_error();
    std::vector<std::byte> got(1 << 20), want(kBlock);
    for (std::uint64_t chunk = 0; chunk < kDisk; chunk += got.size()) {
      ASSERT_EQ(nbd_pread(c.h, got.data(), got.size(), chunk, 0), 0) << nbd_get_error();
      for (std::uint64_t off = 0; off < got.size(); off += kBlock) {
        const std::uint64_t b = (chunk + off) / kBlock;
        auto& s = state_[b];
        fill(b, s.acked, want.data());
        if (std::memcmp(got.data() + off, want.data(), kBlock) == 0) {
          s.pending = 0;
          continue;
        }
        if (s.pending != 0) {
          fill(b, s.pending, want.data());
          if (std::memcmp(got.data() + off, want.data(), kBlock) == 0) {
            s.acked = s.pending;
            s.pending = 0;
            continue;
          }
        }
        std::uint64_t seen_block = 0;
        std::uint32_t seen_gen = 0;
        std::memcpy(&seen_block, got.data() + off, 8);
        std::memcpy(&seen_gen, got.data() + off + 8, 4);
        FAIL() << "iteration " << iteration << ": block " << b << " holds (block " << seen_block
               << ", gen " << seen_gen << "), acknowledged gen " << s.acked << ", pending "
               << s.pending;
      }
    }
  }

  // Writers until the server dies: each owns the blocks b % kWriters == t, writes them inside a
  // hot window that moves every 150 ms, and reads some back right away.
  void load(std::atomic<bool>& stop, std::atomic<std::uint64_t>& writes,
            std::atomic<int>& stale_reads, std::uint64_t seed) {
    std::vector<std::thread> ts;
    for (int t = 0; t < kWriters; ++t) {
      ts.emplace_back([&, t] {
        Nbd c(uri_);
        if (!c.ok) return;
        std::mt19937_64 rng(seed * 31 + t);
        std::vector<std::byte> buf(kBlock), back(kBlock);
        const auto t0 = std::chrono::steady_clock::now();
        while (!stop) {
          const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - t0)
                              .count();
          // A 1 MiB hot window, moving through the disk; 1 write in 8 anywhere.
          const std::uint64_t window = (static_cast<std::uint64_t>(ms / 150) * 7 + seed) % 32;
          std::uint64_t b = rng() % 8 == 0 ? rng() % kBlocks : window * 256 + rng() % 256;
          b = b - b % kWriters + t;
          if (b >= kBlocks) continue;
          auto& s = state_[b];
          const std::uint32_t gen = std::max(s.acked, s.pending) + 1;
          fill(b, gen, buf.data());
          s.pending = gen;
          if (nbd_pwrite(c.h, buf.data(), kBlock, b * kBlock, 0) != 0) return;  // server gone
          s.acked = gen;
          s.pending = 0;
          ++writes;
          if (rng() % 4 == 0) {
            if (nbd_pread(c.h, back.data(), kBlock, b * kBlock, 0) != 0) return;
            if (std::memcmp(back.data(), buf.data(), kBlock) != 0) ++stale_reads;
          }
        }
      });
    }
    for (auto& th : ts) th.join();
  }

  std::string binary_;
  std::filesystem::path dir_;
  std::string uri_;
  std::unique_ptr<ChildProcess> server_;
  std::vector<BlockState> state_ = std::vector<BlockState>(kBlocks);
};

TEST_F(CrashLoop, KillNineDuringMigrationsLosesNothingAcknowledged) {
  std::mt19937_64 rng(2024);
  std::uint64_t moves = 0, total_writes = 0, busy_kills = 0;
  for (int it = 0; it < kIterations; ++it) {
    start_server();
    if (HasFatalFailure()) return;
    verify_all(it);
    if (HasFatalFailure()) return;
    std::atomic<bool> stop{false};
    std::atomic<std::uint64_t> writes{0};
    std::atomic<int> stale{0};
    std::thread loader([&] { load(stop, writes, stale, it + 1); });
    // Kill at a random moment, after the policy has had time to start moving extents.
    std::this_thread::sleep_for(std::chrono::milliseconds(400 + rng() % 900));
    const auto status = read_status_file(dir_ / "fast.tier.status");
    busy_kills += status.queued + status.migrating > 0 ? 1 : 0;
    server_->terminate(SIGKILL);
    while (!server_->exited()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    stop = true;
    loader.join();
    moves += status.promoted + status.demoted;
    total_writes += writes;
    EXPECT_EQ(stale.load(), 0) << "iteration " << it << ": a read returned stale data";
  }
  start_server();
  verify_all(kIterations);
  const auto j = read_journal(dir_ / "fast.tier.journal");
  EXPECT_EQ(j.report.dropped_bytes, 0u) << "the restart cut the torn tail away";
  std::cout << "[ crash loop ] " << kIterations << " kills, " << total_writes
            << " acknowledged writes, " << moves << " moves committed (at most 0.5 s before each "
            << "kill), " << busy_kills
            << " kills while moves were queued (the migration thread copying back to back)\n";
  EXPECT_GT(busy_kills, kIterations / 4) << "too few kills landed during migrations";
  EXPECT_GT(total_writes, 1000u);
  EXPECT_GT(moves, 2u * kIterations) << "the load did not make the policy move extents";
}

}  // namespace
}  // namespace v2p::tier
