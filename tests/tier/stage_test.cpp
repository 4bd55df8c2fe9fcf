// TierStage against a reference model: random reads, writes, zeroes and moves with fixed seeds;
// the content always equals the reference, through moves, aborted copies, reopen and crashes
// (the files as they are at an arbitrary instant of a move).
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

#include "common/error.hpp"
#include "policy/tier/tier_journal.hpp"
#include "policy/tier/tier_policy.hpp"
#include "policy/tier/tier_stage.hpp"
#include "tier_test_util.hpp"
#include "vfilter/file_backend.hpp"

namespace v2p::tier {
namespace {

using vfilter::Fua;
using vfilter::IoTarget;
using vfilter::MayPunch;

constexpr std::uint64_t kExtent = 64 * 1024;
constexpr std::uint64_t kDisk = 32 * kExtent + 12 * 1024;  // the last extent is partial
constexpr std::uint64_t kFast = 8 * kExtent;

const IoTarget kWho{"vm1", "disk0", 1, 1, 0};

struct Fixture {
  explicit Fixture(std::uint64_t rate = 0) : rate_(rate) {
    slow_path = dir.path() / "slow.raw";
    fast_path = dir.path() / "fast.tier";
    test::make_file(slow_path, kDisk);
    ref.assign(kDisk, std::byte{0});
  }
  std::unique_ptr<TierStage> open(std::function<void(ExtentIndex, std::uint64_t)> hook = {}) {
    return open_at(slow_path, fast_path, std::move(hook));
  }
  std::unique_ptr<TierStage> open_at(const std::filesystem::path& slow,
                                     const std::filesystem::path& fast,
                                     std::function<void(ExtentIndex, std::uint64_t)> hook = {}) {
    TierOptions o;
    o.fast_file = fast;
    o.fast_bytes = kFast;
    o.extent_bytes = kExtent;
    o.rate_bytes_per_s = rate_;
    o.want_direct = false;  // tmpfs has no O_DIRECT; the loop-device tests cover it
    o.on_copy_chunk = std::move(hook);
    return std::make_unique<TierStage>(std::make_shared<vfilter::FileBackend>(slow, false, false),
                                       std::move(o));
  }
  void write(TierStage& s, std::mt19937_64& rng) {
    const std::uint64_t off = rng() % kDisk;
    const std::uint64_t len = 1 + rng() % std::min<std::uint64_t>(kDisk - off, 3 * kExtent);
    const auto data = test::random_bytes(rng, len);
    ASSERT_EQ(s.write(kWho, data, off, rng() % 8 == 0 ? Fua::kYes : Fua::kNo), 0);
    std::copy(data.begin(), data.end(), ref.begin() + static_cast<std::ptrdiff_t>(off));
  }
  void zero(TierStage& s, std::mt19937_64& rng) {
    const std::uint64_t off = (rng() % (kDisk / 4096)) * 4096;
    const std::uint64_t len = std::min<std::uint64_t>(kDisk - off, 4096 * (1 + rng() % 40));
    ASSERT_EQ(s.write_zeroes(kWho, off, len, rng() % 2 ? MayPunch::kYes : MayPunch::kNo, Fua::kNo),
              0);
    std::fill_n(ref.begin() + static_cast<std::ptrdiff_t>(off), len, std::byte{0});
  }
  void check_range(TierStage& s, std::uint64_t off, std::uint64_t len) {
    std::vector<std::byte> got(len);
    ASSERT_EQ(s.read(kWho, got, off), 0);
    ASSERT_TRUE(std::equal(got.begin(), got.end(), ref.begin() + static_cast<std::ptrdiff_t>(off)))
        << "content differs from the reference in [" << off << ", " << off + len << ")";
  }
  void check_all(TierStage& s) { check_range(s, 0, kDisk); }

  test::ScratchDir dir;
  std::filesystem::path slow_path, fast_path;
  std::vector<std::byte> ref;
  std::uint64_t rate_;
};

TEST(TierStage, PromotedAndDemotedExtentsKeepTheirContent) {
  Fixture f;
  auto s = f.open();
  std::mt19937_64 rng(7);
  for (int i = 0; i < 30; ++i) f.write(*s, rng);
  EXPECT_EQ(s->request(ExtentIndex(3), Tier::kFast), TierRequestResult::kQueued);
  EXPECT_EQ(s->request(ExtentIndex(3), Tier::kFast), TierRequestResult::kAlreadyThere);
  EXPECT_EQ(s->request(ExtentIndex(32), Tier::kFast), TierRequestResult::kQueued) << "partial";
  EXPECT_EQ(s->request(ExtentIndex(33), Tier::kFast), TierRequestResult::kUnknown);
  ASSERT_TRUE(s->wait_idle(std::chrono::seconds(10)));
  EXPECT_EQ(s->placement(ExtentIndex(3)).tier, Tier::kFast);
  EXPECT_EQ(s->placement(ExtentIndex(32)).tier, Tier::kFast);
  f.check_all(*s);
  // The bytes really are in the fast file now: the slow file's copy goes stale under writes.
  std::vector<std::byte> data(kExtent, std::byte{0x5A});
  ASSERT_EQ(s->write(kWho, data, 3 * kExtent, Fua::kNo), 0);
  std::copy(data.begin(), data.end(), f.ref.begin() + 3 * kExtent);
  vfilter::FileBackend slow(f.slow_path, true, false);
  std::vector<std::byte> home(kExtent);
  ASSERT_EQ(slow.read(kWho, home, 3 * kExtent), 0);
  EXPECT_NE(home, data);
  EXPECT_EQ(s->request(ExtentIndex(3), Tier::kSlow), TierRequestResult::kQueued);
  ASSERT_TRUE(s->wait_idle(std::chrono::seconds(10)));
  ASSERT_EQ(slow.read(kWho, home, 3 * kExtent), 0);
  EXPECT_EQ(home, data) << "demotion copied the fast copy home";
  f.check_all(*s);
  const auto st = s->status();
  EXPECT_EQ(st.promoted, 2u);
  EXPECT_EQ(st.demoted, 1u);
  EXPECT_EQ(st.fast_extents, 1u);
  EXPECT_EQ(st.vm_name, "vm1");
}

// An extent not written since its promotion goes home without a copy (the home still holds its
// bytes); one written since is copied back.
TEST(TierStage, CleanDemotionsNeedNoCopy) {
  Fixture f;
  auto s = f.open();
  std::mt19937_64 rng(3);
  for (int i = 0; i < 30; ++i) f.write(*s, rng);
  s->request(ExtentIndex(1), Tier::kFast);
  s->request(ExtentIndex(2), Tier::kFast);
  ASSERT_TRUE(s->wait_idle(std::chrono::seconds(10)));
  std::vector<std::byte> d(512, std::byte{0x77});
  ASSERT_EQ(s->write(kWho, d, 2 * kExtent + 4096, Fua::kNo), 0);
  std::copy(d.begin(), d.end(), f.ref.begin() + 2 * kExtent + 4096);
  f.check_all(*s);
  s->request(ExtentIndex(1), Tier::kSlow);
  s->request(ExtentIndex(2), Tier::kSlow);
  ASSERT_TRUE(s->wait_idle(std::chrono::seconds(10)));
  const auto st = s->status();
  EXPECT_EQ(st.demoted, 2u);
  EXPECT_EQ(st.clean_demotions, 1u);
  EXPECT_EQ(st.bytes_migrated, 3 * kExtent) << "two promotions and one copied demotion";
  f.check_all(*s);
  s.reset();
  s = f.open();
  f.check_all(*s);
}

TEST(TierStage, FastTierCapacityAndShareAreEnforced) {
  Fixture f;
  auto s = f.open();
  for (std::uint64_t e = 0; e < 8; ++e) {
    EXPECT_EQ(s->request(ExtentIndex(e), Tier::kFast), TierRequestResult::kQueued);
  }
  EXPECT_EQ(s->request(ExtentIndex(9), Tier::kFast), TierRequestResult::kNoSpace);
  ASSERT_TRUE(s->wait_idle(std::chrono::seconds(10)));
  EXPECT_EQ(s->status().fast_extents, 8u);
  s->set_class_of_service({1.0, 0.5});
  EXPECT_EQ(s->request(ExtentIndex(9), Tier::kFast), TierRequestResult::kNoSpace);
  for (std::uint64_t e = 0; e < 5; ++e) s->request(ExtentIndex(e), Tier::kSlow);
  ASSERT_TRUE(s->wait_idle(std::chrono::seconds(10)));
  EXPECT_EQ(s->request(ExtentIndex(9), Tier::kFast), TierRequestResult::kQueued);
  EXPECT_EQ(s->request(ExtentIndex(10), Tier::kFast), TierRequestResult::kNoSpace)
      << "half of 8 slots";
}

// The write-intent rule: a write to the extent being copied makes the copy stale; it must not
// commit, and the retry carries the write.
TEST(TierStage, AWriteDuringTheCopyAbortsItAndTheRetryCarriesTheWrite) {
  Fixture f;
  std::atomic<int> injected{0};
  TierStage* stage = nullptr;
  std::vector<std::byte> pattern(4096, std::byte{0xC3});
  auto s = f.open([&](ExtentIndex e, std::uint64_t done) {
    // First chunk of the first two attempts: the guest writes into the middle of the extent.
    if (done == 0 || injected >= 2 || stage == nullptr) return;
    ++injected;
    ASSERT_EQ(stage->write(kWho, pattern, e.value() * kExtent + 8192, Fua::kNo), 0);
  });
  stage = s.get();
  std::mt19937_64 rng(11);
  for (int i = 0; i < 20; ++i) f.write(*s, rng);
  std::copy(pattern.begin(), pattern.end(), f.ref.begin() + 5 * kExtent + 8192);
  ASSERT_EQ(s->request(ExtentIndex(5), Tier::kFast), TierRequestResult::kQueued);
  ASSERT_TRUE(s->wait_idle(std::chrono::seconds(10)));
  EXPECT_EQ(injected.load(), 2);
  EXPECT_EQ(s->status().aborted, 2u);
  EXPECT_EQ(s->placement(ExtentIndex(5)).tier, Tier::kFast);
  f.check_all(*s);
}

// An extent written on every chunk of every copy still moves: after three aborts the copy holds
// the extent's lock and writes wait for it.
TEST(TierStage, AnExtentWrittenAllTheTimeStillMoves) {
  Fixture f;
  TierStage* stage = nullptr;
  std::atomic<int> injected{0};
  auto s = f.open([&](ExtentIndex e, std::uint64_t) {
    if (stage == nullptr) return;
    ++injected;
    std::vector<std::byte> d(512, static_cast<std::byte>(injected.load()));
    ASSERT_EQ(stage->write(kWho, d, e.value() * kExtent, Fua::kNo), 0);
    std::copy(d.begin(), d.end(), f.ref.begin() + static_cast<std::ptrdiff_t>(e.value() * kExtent));
  });
  stage = s.get();
  ASSERT_EQ(s->request(ExtentIndex(2), Tier::kFast), TierRequestResult::kQueued);
  ASSERT_TRUE(s->wait_idle(std::chrono::seconds(10)));
  EXPECT_EQ(s->status().aborted, 3u);
  EXPECT_EQ(s->placement(ExtentIndex(2)).tier, Tier::kFast);
  f.check_all(*s);
}

// Random operations from the data path and the policy side at once, several seeds: content
// equals the reference at every check and after reopening.
TEST(TierStage, RandomOperationsMatchTheReferenceModel) {
  for (std::uint64_t seed = 1; seed <= 6; ++seed) {
    Fixture f;
    std::mt19937_64 rng(seed);
    auto s = f.open();
    std::uint64_t moves = 0;
    for (int step = 0; step < 400; ++step) {
      const auto op = rng() % 100;
      if (op < 45) {
        f.write(*s, rng);
      } else if (op < 50) {
        f.zero(*s, rng);
      } else if (op < 70) {
        const std::uint64_t off = rng() % kDisk;
        f.check_range(*s, off, 1 + rng() % std::min<std::uint64_t>(kDisk - off, 2 * kExtent));
      } else if (op < 90) {
        s->request(ExtentIndex(rng() % 33), rng() % 3 == 0 ? Tier::kSlow : Tier::kFast);
      } else if (op < 95) {
        ASSERT_EQ(s->flush(kWho), 0);
      } else if (op < 97) {
        moves += s->status().promoted + s->status().demoted;
        s.reset();  // clean restart: the journal replays
        s = f.open();
        f.check_all(*s);
      } else {
        ASSERT_TRUE(s->wait_idle(std::chrono::seconds(10)));
      }
      if (HasFatalFailure()) return;
    }
    ASSERT_TRUE(s->wait_idle(std::chrono::seconds(10)));
    f.check_all(*s);
    moves += s->status().promoted + s->status().demoted;
    EXPECT_GT(moves, 0u) << "seed " << seed;
  }
}

// Guest writes from several threads while the policy side moves extents back and forth; each
// thread owns its own byte ranges so the reference is exact without ordering between threads.
TEST(TierStage, ConcurrentWritersAndMigrationsLoseNothing) {
  Fixture f;
  auto s = f.open();
  constexpr int kThreads = 4;
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      while (!stop) {
        // Thread t owns the 4 KiB blocks b with b % kThreads == t.
        const std::uint64_t block = (rng() % (kDisk / 4096 / kThreads)) * kThreads + t;
        const auto data = test::random_bytes(rng, 4096);
        ASSERT_EQ(s->write(kWho, data, block * 4096, Fua::kNo), 0);
        std::copy(data.begin(), data.end(),
                  f.ref.begin() + static_cast<std::ptrdiff_t>(block * 4096));
      }
    });
  }
  std::mt19937_64 rng(5);
  for (int i = 0; i < 400; ++i) {
    const auto fast = s->fast_extents();
    if (fast.size() >= 6 || (!fast.empty() && rng() % 3 == 0)) {
      s->request(fast[rng() % fast.size()], Tier::kSlow);
    } else {
      s->request(ExtentIndex(rng() % 33), Tier::kFast);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  stop = true;
  for (auto& w : writers) w.join();
  ASSERT_TRUE(s->wait_idle(std::chrono::seconds(20)));
  f.check_all(*s);
  const auto st = s->status();
  EXPECT_GT(st.promoted, 5u);
  EXPECT_GT(st.demoted, 0u);
}

// A crash is the files as they are at some instant (the page cache survives a killed process).
// Snapshot slow file, fast file and journal in the middle of every chunk of a series of moves,
// and at random instants of a concurrent run: each snapshot opens to the reference content as of
// the last write acknowledged before the snapshot.
TEST(TierStage, EveryInstantOfAMoveIsARecoverableCrash) {
  Fixture f;
  int snap = 0;
  std::vector<std::filesystem::path> snapshots;
  auto take = [&] {
    const auto d = f.dir.path() / ("crash" + std::to_string(snap++));
    std::filesystem::create_directories(d);
    std::filesystem::copy_file(f.slow_path, d / "slow.raw");
    std::filesystem::copy_file(f.fast_path, d / "fast.tier");
    auto j = f.fast_path;
    j += ".journal";
    std::filesystem::copy_file(j, d / "fast.tier.journal");
    snapshots.push_back(d);
  };
  std::mt19937_64 rng(21);
  {
    auto s = f.open([&](ExtentIndex, std::uint64_t) { take(); });
    for (int i = 0; i < 40; ++i) f.write(*s, rng);
    for (std::uint64_t e : {1, 4, 4, 9, 1, 32, 9}) {
      s->request(ExtentIndex(e),
                 s->placement(ExtentIndex(e)).tier == Tier::kFast ? Tier::kSlow : Tier::kFast);
      ASSERT_TRUE(s->wait_idle(std::chrono::seconds(10)));
      take();  // just after a commit
    }
  }
  ASSERT_GT(snapshots.size(), 7u);
  // No guest writes happened during the moves: every snapshot must read as the reference.
  for (const auto& d : snapshots) {
    auto s = f.open_at(d / "slow.raw", d / "fast.tier");
    f.check_all(*s);
    if (HasFatalFailure()) FAIL() << "snapshot " << d;
  }
  // A torn commit record: cut the last record of a journal mid-way; the move is undone and the
  // old copy (still intact) is what reads return.
  const auto& last = snapshots.back();
  const auto j = last / "fast.tier.journal";
  const auto size = std::filesystem::file_size(j);
  ASSERT_GT(size, 64u);
  std::filesystem::resize_file(j, size - 23);
  auto s = f.open_at(last / "slow.raw", last / "fast.tier");
  f.check_all(*s);
}

TEST(TierStage, RateLimitHoldsTheCopyRate) {
  Fixture f(2 * kExtent);  // two extents per second
  auto s = f.open();
  const auto t0 = std::chrono::steady_clock::now();
  for (std::uint64_t e = 0; e < 4; ++e) s->request(ExtentIndex(e), Tier::kFast);
  ASSERT_TRUE(s->wait_idle(std::chrono::seconds(20)));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // Four extents at two per second: the first chunk goes at once, so at least ~1.5 s.
  EXPECT_GE(secs, 1.4);
  EXPECT_LE(secs, 4.0);
  EXPECT_EQ(s->status().fast_extents, 4u);
}

TEST(TierStage, StatusFileRoundTrips) {
  Fixture f;
  auto s = f.open();
  std::vector<std::byte> d(4096, std::byte{1});
  for (int i = 0; i < 10; ++i) ASSERT_EQ(s->read(kWho, d, 0), 0);
  s->request(ExtentIndex(0), Tier::kFast);
  ASSERT_TRUE(s->wait_idle(std::chrono::seconds(10)));
  s->write_status_file();
  auto p = f.fast_path;
  p += ".status";
  const auto st = read_status_file(p);
  EXPECT_EQ(st.vm_name, "vm1");
  EXPECT_EQ(st.fast_extents, 1u);
  EXPECT_EQ(st.hot_extents, 1u);
  EXPECT_EQ(st.hot_on_fast, 1u);
  EXPECT_DOUBLE_EQ(st.hot_fraction_on_fast(), 1.0);
  EXPECT_EQ(st.promoted, 1u);
}

TEST(TierStage, RejectsBadOptions) {
  Fixture f;
  auto slow = std::make_shared<vfilter::FileBackend>(f.slow_path, false, false);
  TierOptions o;
  o.fast_file = f.fast_path;
  o.fast_bytes = kFast;
  o.extent_bytes = 3000;
  EXPECT_THROW(TierStage(slow, o), Error);
  o.extent_bytes = kExtent;
  o.fast_bytes = 100;
  EXPECT_THROW(TierStage(slow, o), Error);
}

// The autopilot (built-in policy on the stage's own heat) promotes what is read a lot.
TEST(TierAutopilot, PromotesTheHotExtents) {
  Fixture f;
  auto s = f.open();
  TierPolicyParams p;
  p.promote_heat = 8;
  TierAutopilot pilot(*s, p, std::chrono::milliseconds(20));
  std::vector<std::byte> d(4096);
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(s->read(kWho, d, 6 * kExtent + 4096), 0);
    ASSERT_EQ(s->read(kWho, d, 20 * kExtent), 0);
  }
  ASSERT_EQ(s->read(kWho, d, 11 * kExtent), 0);  // once: cold
  for (int i = 0; i < 200 && s->status().fast_extents < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(s->wait_idle(std::chrono::seconds(10)));
  EXPECT_EQ(s->placement(ExtentIndex(6)).tier, Tier::kFast);
  EXPECT_EQ(s->placement(ExtentIndex(20)).tier, Tier::kFast);
  EXPECT_EQ(s->placement(ExtentIndex(11)).tier, Tier::kSlow);
  EXPECT_DOUBLE_EQ(s->status().hot_fraction_on_fast(), 1.0);
}

}  // namespace
}  // namespace v2p::tier
