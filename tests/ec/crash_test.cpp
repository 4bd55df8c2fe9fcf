// A writer killed with SIGKILL at random points loses nothing it acknowledged. The child reports
// through a pipe what it starts writing and what flush() acknowledged; the parent kills it,
// reopens the pool and checks every acknowledged slot holds that write or a later one.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <sstream>

#include "ec/pool.hpp"
#include "pool_fixture.hpp"

namespace v2p::ec {
namespace {

const VdiskKey kDisk{VmId{4}, VdiskId{1}};
constexpr std::uint32_t kSlot = 16U << 10;
constexpr std::uint32_t kSlots = 160;

// Slot contents: (slot, generation) in the first 8 bytes, then bytes derived from both.
std::vector<std::uint8_t> slot_bytes(std::uint32_t slot, std::uint32_t gen) {
  auto b = testing::pattern((std::uint64_t{slot} << 32) | gen, kSlot);
  std::memcpy(b.data(), &slot, 4);
  std::memcpy(b.data() + 4, &gen, 4);
  return b;
}

void say(int fd, char what, std::uint32_t slot, std::uint32_t gen) {
  char line[64];
  const int n = std::snprintf(line, sizeof line, "%c %u %u\n", what, slot, gen);
  if (::write(fd, line, static_cast<std::size_t>(n)) != n) ::_exit(3);
}

// The child: batches of slot writes, each batch flushed and then acknowledged.
[[noreturn]] void writer(const PoolConfig& cfg, std::map<std::uint32_t, std::uint32_t> gens,
                         std::uint32_t seed, int fd) {
  try {
    Pool pool(cfg);
    std::mt19937 gen(seed);
    for (;;) {
      std::vector<std::pair<std::uint32_t, std::uint32_t>> batch;
      const int n = 1 + static_cast<int>(gen() % 40);
      for (int i = 0; i < n; ++i) {
        const std::uint32_t slot = gen() % kSlots;
        const std::uint32_t g = ++gens[slot];
        say(fd, 'S', slot, g);
        pool.write(kDisk, VirtualOffset{std::uint64_t{slot} * kSlot}, slot_bytes(slot, g));
        batch.emplace_back(slot, g);
      }
      pool.flush();
      for (auto [slot, g] : batch) say(fd, 'A', slot, g);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "writer: %s\n", e.what());
    ::_exit(2);
  }
}

TEST(EcCrash, KilledWriterLosesNothingAcknowledged) {
  testing::TempPool t(6, {4, 2}, 1U << 20, kSlot);
  std::map<std::uint32_t, std::uint32_t> acked, started;
  std::mt19937 rng(2026);
  int verified_rounds = 0;
  std::uint64_t acks = 0;
  for (int round = 0; round < 30; ++round) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      writer(t.config, started, static_cast<std::uint32_t>(round + 1), fds[1]);
    }
    ::close(fds[1]);
    // Drain the pipe while the child runs, then kill it at a random moment.
    const auto kill_at =
        std::chrono::steady_clock::now() + std::chrono::microseconds(2000 + rng() % 150000);
    std::string text;
    char buf[4096];
    bool eof = false;
    auto drain = [&](int timeout_ms) {
      pollfd p{fds[0], POLLIN, 0};
      if (::poll(&p, 1, timeout_ms) > 0) {
        const ssize_t n = ::read(fds[0], buf, sizeof buf);
        if (n > 0) text.append(buf, static_cast<std::size_t>(n));
        if (n == 0) eof = true;
      }
    };
    while (!eof && std::chrono::steady_clock::now() < kill_at) drain(1);
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    while (!eof) drain(100);
    ::close(fds[0]);
    ASSERT_TRUE(WIFSIGNALED(status)) << "writer exited by itself, status " << status;

    std::istringstream lines(text);
    char what = 0;
    std::uint32_t slot = 0, g = 0;
    while (lines >> what >> slot >> g) {
      auto& m = what == 'A' ? acked : started;
      m[slot] = std::max(m[slot], g);
      acks += what == 'A';
    }
    Pool pool(t.config);
    for (const auto& [s, a] : acked) {
      auto r = pool.read(kDisk, VirtualOffset{std::uint64_t{s} * kSlot}, kSlot);
      ASSERT_TRUE(r.ok()) << "round " << round << " slot " << s << ": " << r.error();
      std::uint32_t got_slot = 0, got_gen = 0;
      std::memcpy(&got_slot, r.value().data(), 4);
      std::memcpy(&got_gen, r.value().data() + 4, 4);
      ASSERT_EQ(got_slot, s);
      // The acknowledged write or a later one that reached the disk before the kill.
      ASSERT_GE(got_gen, a) << "round " << round << " slot " << s << " lost an acknowledged write";
      ASSERT_LE(got_gen, started[s]);
      ASSERT_EQ(r.value(), slot_bytes(s, got_gen)) << "round " << round << " slot " << s;
      // The next round continues from what is on disk.
      started[s] = std::max(started[s], got_gen);
    }
    ++verified_rounds;
  }
  EXPECT_EQ(verified_rounds, 30);
  EXPECT_GT(acks, 100U) << "the writer acknowledged too little for the test to mean much";
  // A final scrub finds no damaged chunk, only orphans of the killed writes.
  Pool pool(t.config);
  const auto rep = pool.scrub();
  EXPECT_EQ(rep.chunks_bad, 0U);
  EXPECT_EQ(rep.unrepairable, 0U);
}

}  // namespace
}  // namespace v2p::ec
