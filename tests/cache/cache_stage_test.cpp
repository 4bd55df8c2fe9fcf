// The cache stage against a reference: a simulated copy-on-write host file system (sim_fs.hpp)
// holds the truth; every read through the cache must equal a direct read of the file, whatever
// writes, trims, relocations, invalidations, evictions and restarts happened before; quotas hold
// after every step. Plus corruption of the cache file (data, headers, superblock, truncation,
// an unclean shutdown) and concurrent readers and writers.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "policy/cache/cache_stage.hpp"
#include "sim_fs.hpp"

namespace v2p::cache {
namespace {

using namespace testing;

class TmpDir {
 public:
  TmpDir() {
    std::string t = "/var/tmp/v2p-cache-test-XXXXXX";
    if (::mkdtemp(t.data()) == nullptr) throw std::runtime_error("mkdtemp");
    path_ = t;
  }
  ~TmpDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

constexpr std::uint32_t kBlock = 16 << 10;

struct Rig {
  Rig(std::uint64_t cache_slots, WriteMode mode, bool always_cow, std::uint64_t file_bytes,
      int clones)
      : fs(std::make_shared<SimFs>(8192, always_cow)) {
    opts.file = dir.path() / "cache.bin";
    opts.block_bytes = kBlock;
    opts.size_bytes = 4096 + 4096 + cache_slots * (4096 + kBlock);
    opts.write_mode = mode;
    opts.direct_io = true;
    templ = fs->create(file_bytes);
    std::mt19937_64 rng(99);
    fs->write(templ, random_bytes(rng, file_bytes), 0);
    for (int i = 0; i < clones; ++i) files.push_back(fs->reflink(templ));
    open();
  }
  void open() {
    cache = std::make_shared<FlashCache>(opts);
    stages.clear();
    backends.clear();
    for (std::size_t i = 0; i < files.size(); ++i) {
      backends.push_back(std::make_shared<SimBackend>(fs, files[i]));
      stages.push_back(std::make_shared<CacheStage>(cache, backends.back(),
                                                    std::make_unique<SimResolver>(fs, files[i]),
                                                    "disk" + std::to_string(i)));
    }
  }
  void restart() {
    stages.clear();
    cache->close();
    cache.reset();
    open();
  }
  std::vector<std::byte> truth(std::size_t i, std::uint64_t off, std::size_t len) const {
    std::vector<std::byte> v(len);
    fs->read(files[i], v, off);
    return v;
  }
  std::vector<std::byte> read(std::size_t i, std::string_view vm, std::uint64_t off,
                              std::size_t len) {
    std::vector<std::byte> v(len);
    EXPECT_EQ(stages[i]->read(target(vm, "d"), v, off), 0);
    return v;
  }

  TmpDir dir;
  std::shared_ptr<SimFs> fs;
  FlashCacheOptions opts;
  std::size_t templ = 0;
  std::vector<std::size_t> files;
  std::shared_ptr<FlashCache> cache;
  std::vector<std::shared_ptr<SimBackend>> backends;
  std::vector<std::shared_ptr<CacheStage>> stages;
};

const char* kVm[2] = {"vm1", "vm2"};

TEST(CacheStage, ReadsAlwaysEqualTheOriginOverRandomSequences) {
  std::uint64_t total_hits = 0;
  for (unsigned seed = 1; seed <= 8; ++seed) {
    for (bool cow : {false, true}) {
      for (WriteMode mode : {WriteMode::kWriteThrough, WriteMode::kWriteAround}) {
        SCOPED_TRACE(::testing::Message()
                     << "seed " << seed << " cow " << cow << " mode " << int(mode));
        Rig r(24, mode, cow, 1 << 20, 2);
        r.opts.quotas = {{"vm1", 8 * kBlock}, {"vm2", 14 * kBlock}};
        r.opts.priorities = {{"vm2", 1}};
        r.restart();
        std::mt19937_64 rng(seed);
        for (int step = 0; step < 1500; ++step) {
          const std::size_t f = rng() % 2;
          const auto vm = kVm[f];
          // Mostly a hot 256 KiB, so blocks are hit and shared; sometimes anywhere.
          const std::uint64_t span = rng() % 4 == 0 ? (1 << 20) : (256 << 10);
          const std::size_t len = 512 * (1 + rng() % 96);
          const std::uint64_t off =
              std::min<std::uint64_t>(512 * (rng() % (span / 512)), (1 << 20) - len);
          const unsigned op = rng() % 100;
          if (op < 70) {
            const auto got = r.read(f, vm, off, len);
            ASSERT_EQ(got, r.truth(f, off, len))
                << "step " << step << " read " << off << "+" << len;
          } else if (op < 79) {
            const auto data = random_bytes(rng, len);
            ASSERT_EQ(r.stages[f]->write(target(vm, "d"), data, off, vfilter::Fua::kNo), 0);
          } else if (op < 82) {
            ASSERT_EQ(r.stages[f]->trim(target(vm, "d"), off, len), 0);
          } else if (op < 85) {
            ASSERT_EQ(r.stages[f]->write_zeroes(target(vm, "d"), off, len, vfilter::MayPunch::kYes,
                                                vfilter::Fua::kNo),
                      0);
          } else if (op < 90) {
            r.cache->invalidate("disk" + std::to_string(f), VirtualOffset(off), len);
          } else if (op < 95) {
            r.cache->set_quota("vm1", (2 + rng() % 10) * kBlock);
          } else if (op < 96) {
            for (const char* v : kVm) {
              if (const auto st = r.cache->vm_stats(v)) total_hits += st->hits;
            }
            r.restart();
          } else {
            r.cache->set_priority("vm1", static_cast<int>(rng() % 3));
          }
          const auto bad = r.cache->check();
          ASSERT_FALSE(bad) << "step " << step << ": " << *bad;
          for (const char* v : kVm) {
            const auto st = r.cache->vm_stats(v);
            if (st && st->quota_bytes != 0) {
              ASSERT_LE(st->resident_bytes, st->quota_bytes) << v;
            }
          }
        }
        for (const char* v : kVm) {
          if (const auto st = r.cache->vm_stats(v)) {
            total_hits += st->hits;
            if (std::getenv("V2P_CACHE_TEST_VERBOSE"))
              std::printf("%s hits %lu misses %lu rejected %lu fills %lu evict %lu reloc %lu\n", v,
                          st->hits, st->misses, st->rejected, st->fills, st->evictions,
                          r.stages[0]->relocations());
          }
        }
      }
    }
  }
  EXPECT_GT(total_hits, 3000U) << "the cache was hardly used: the test proves little";
}

TEST(CacheStage, ReflinkedClonesShareEntriesAndDivergeOnWrite) {
  Rig r(256, WriteMode::kWriteAround, false, 1 << 20, 2);
  for (int pass = 0; pass < 2; ++pass)  // second-hit admission: the second pass fills
    ASSERT_EQ(r.read(0, "vm1", 0, 1 << 20), r.truth(0, 0, 1 << 20));
  EXPECT_EQ(r.cache->entries(), (1U << 20) / kBlock);
  const auto reads_before = r.backends[1]->reads.load();
  ASSERT_EQ(r.read(1, "vm2", 0, 1 << 20), r.truth(1, 0, 1 << 20));
  EXPECT_EQ(r.backends[1]->reads.load(), reads_before) << "vm2 read its clone from flash";
  EXPECT_EQ(r.cache->entries(), (1U << 20) / kBlock) << "shared blocks are held once";
  const auto s2 = r.cache->vm_stats("vm2");
  ASSERT_TRUE(s2);
  EXPECT_EQ(s2->hits, (1U << 20) / kBlock);
  EXPECT_EQ(s2->bytes_from_flash, 1U << 20);
  EXPECT_EQ(s2->resident_bytes, 0U) << "vm1 filled them, vm1 owns them";

  // vm1 overwrites a shared block: copy-on-write moves it; vm2 still sees the template.
  std::vector<std::byte> mine(4096, std::byte{0x77});
  ASSERT_EQ(r.stages[0]->write(target("vm1", "d"), mine, 5 * kBlock, vfilter::Fua::kNo), 0);
  EXPECT_EQ(r.stages[0]->relocations(), 1U);
  EXPECT_EQ(r.read(0, "vm1", 5 * kBlock, 4096), mine);
  EXPECT_EQ(r.read(1, "vm2", 5 * kBlock, kBlock), r.truth(1, 5 * kBlock, kBlock));
  EXPECT_NE(r.truth(1, 5 * kBlock, 4096), mine);
}

TEST(CacheStage, WriteThroughCachesWholeWrittenBlocks) {
  Rig r(64, WriteMode::kWriteThrough, true, 1 << 20, 1);
  for (int pass = 0; pass < 2; ++pass) r.read(0, "vm1", 0, kBlock);
  ASSERT_EQ(r.cache->entries(), 1U);
  std::mt19937_64 rng(5);
  const auto data = random_bytes(rng, kBlock);
  ASSERT_EQ(r.stages[0]->write(target("vm1", "d"), data, 0, vfilter::Fua::kNo), 0);
  EXPECT_EQ(r.cache->entries(), 1U) << "the rewritten block is cached at its new place";
  const auto reads = r.backends[0]->reads.load();
  EXPECT_EQ(r.read(0, "vm1", 0, kBlock), data);
  EXPECT_EQ(r.backends[0]->reads.load(), reads) << "served from flash";
  EXPECT_EQ(r.cache->vm_stats("vm1")->fills, 2U);
}

TEST(CacheStage, HolesAreNotCached) {
  Rig r(64, WriteMode::kWriteAround, false, 1 << 20, 1);
  ASSERT_EQ(r.stages[0]->trim(target("vm1", "d"), 0, 4 * kBlock), 0);
  for (int pass = 0; pass < 3; ++pass)
    EXPECT_EQ(r.read(0, "vm1", 0, 4 * kBlock), std::vector<std::byte>(4 * kBlock));
  EXPECT_EQ(r.cache->entries(), 0U);
}

TEST(CacheStage, AdmissionHookDecides) {
  Rig r(64, WriteMode::kWriteAround, false, 1 << 20, 1);
  int asked = 0;
  r.cache->set_admit_hook([&](const IoEvent& e) {
    ++asked;
    EXPECT_EQ(e.vm_name, "vm1");
    EXPECT_TRUE(e.has_physical);
    return e.voffset.value() < 4 * kBlock ? Admission::kAdmit : Admission::kBypass;
  });
  for (int pass = 0; pass < 3; ++pass) r.read(0, "vm1", 0, 8 * kBlock);
  EXPECT_EQ(r.cache->entries(), 4U) << "admitted on the first miss, bypassed the rest";
  EXPECT_GT(asked, 0);
}

// Fills every block of a 1 MiB clone and closes the cache cleanly.
Rig filled_rig() {
  Rig r(128, WriteMode::kWriteAround, false, 1 << 20, 1);
  for (int pass = 0; pass < 2; ++pass) r.read(0, "vm1", 0, 1 << 20);
  EXPECT_EQ(r.cache->entries(), 64U);
  r.stages.clear();
  r.cache->close();
  return r;
}

void patch(const std::filesystem::path& file, std::uint64_t offset, std::byte x) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ static_cast<char>(x));
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

TEST(CacheRestart, EntriesSurviveACleanRestartAndServeCorrectData) {
  Rig r = filled_rig();
  r.open();
  EXPECT_TRUE(r.cache->restore_report().clean);
  EXPECT_EQ(r.cache->restore_report().restored, 64U);
  const auto reads = r.backends[0]->reads.load();
  EXPECT_EQ(r.read(0, "vm1", 0, 1 << 20), r.truth(0, 0, 1 << 20));
  EXPECT_EQ(r.backends[0]->reads.load(), reads) << "all from flash";
  EXPECT_EQ(r.cache->vm_stats("vm1")->hits, 64U);
  EXPECT_EQ(r.cache->vm_stats("vm1")->resident_bytes, 64U * kBlock) << "owner restored";
}

TEST(CacheRestart, CorruptDataIsDetectedDroppedAndReadFromOrigin) {
  Rig r = filled_rig();
  const auto g = plan_geometry(r.opts.size_bytes, kBlock);
  for (std::uint32_t s : {0U, 7U, 63U})
    patch(r.opts.file, g.slot_offset(CacheSlot(s)) + kHeaderBytes + 1000 + s, std::byte{0x10});
  r.open();
  EXPECT_EQ(r.cache->restore_report().restored, 64U) << "data is checked when served";
  EXPECT_EQ(r.read(0, "vm1", 0, 1 << 20), r.truth(0, 0, 1 << 20));
  EXPECT_EQ(r.cache->vm_stats("vm1")->corrupt, 3U);
  EXPECT_EQ(r.cache->vm_stats("vm1")->hits, 61U);
  EXPECT_EQ(r.cache->entries(), 61U);
  EXPECT_FALSE(r.cache->check());
}

TEST(CacheRestart, CorruptHeadersAreDiscardedAtRestart) {
  Rig r = filled_rig();
  const auto g = plan_geometry(r.opts.size_bytes, kBlock);
  patch(r.opts.file, g.slot_offset(CacheSlot(3)) + 0, std::byte{1});   // magic
  patch(r.opts.file, g.slot_offset(CacheSlot(4)) + 16, std::byte{1});  // device
  patch(r.opts.file, g.slot_offset(CacheSlot(5)) + 24, std::byte{2});  // sector
  patch(r.opts.file, g.slot_offset(CacheSlot(6)) + 44, std::byte{4});  // data crc
  r.open();
  EXPECT_EQ(r.cache->restore_report().discarded, 4U);
  EXPECT_EQ(r.cache->restore_report().restored, 60U);
  EXPECT_EQ(r.read(0, "vm1", 0, 1 << 20), r.truth(0, 0, 1 << 20));
}

TEST(CacheRestart, TruncatedFileKeepsOnlyIntactEntries) {
  Rig r = filled_rig();
  const auto g = plan_geometry(r.opts.size_bytes, kBlock);
  // Cut in the middle of slot 40's data.
  std::filesystem::resize_file(r.opts.file, g.slot_offset(CacheSlot(40)) + kHeaderBytes + 100);
  r.open();
  EXPECT_EQ(r.cache->restore_report().restored, 41U);
  EXPECT_EQ(r.read(0, "vm1", 0, 1 << 20), r.truth(0, 0, 1 << 20));
  EXPECT_EQ(r.cache->vm_stats("vm1")->corrupt, 1U) << "slot 40's data is cut";
}

TEST(CacheRestart, CorruptSuperblockOrUncleanShutdownStartsEmpty) {
  Rig r = filled_rig();
  patch(r.opts.file, 8, std::byte{1});
  r.open();
  EXPECT_FALSE(r.cache->restore_report().clean);
  EXPECT_EQ(r.cache->entries(), 0U);
  EXPECT_EQ(r.read(0, "vm1", 0, 1 << 20), r.truth(0, 0, 1 << 20));
  // A copy taken while the cache is open is what a crash leaves: never trusted.
  for (int pass = 0; pass < 2; ++pass) r.read(0, "vm1", 0, 1 << 20);
  ASSERT_EQ(r.cache->entries(), 64U);
  const auto crashed = r.dir.path() / "crashed.bin";
  std::filesystem::copy_file(r.opts.file, crashed);
  r.stages.clear();
  r.cache.reset();
  r.opts.file = crashed;
  r.open();
  EXPECT_FALSE(r.cache->restore_report().clean);
  EXPECT_EQ(r.cache->entries(), 0U);
}

// Two files, each with a writer thread (its own regions) and a reader thread (regions nobody
// writes, shared with the other clone); every read is checked.
TEST(CacheStage, ConcurrentReadersAndWritersNeverSeeStaleData) {
  for (bool cow : {false, true}) {
    Rig r(32, WriteMode::kWriteThrough, cow, 1 << 20, 2);
    const auto templ_copy = r.truth(0, 0, 1 << 20);
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (std::size_t f = 0; f < 2; ++f) {
      threads.emplace_back([&, f] {  // writer: within blocks 0..15 of its file
        std::mt19937_64 rng(f + 10);
        for (int i = 0; i < 400; ++i) {
          const std::uint64_t off = (rng() % 15) * kBlock + 512 * (rng() % 8);
          const auto data = random_bytes(rng, 512 * (1 + rng() % 40));
          std::vector<std::byte> back(data.size());
          if (r.stages[f]->write(target(kVm[f], "d"), data, off, vfilter::Fua::kNo) != 0 ||
              r.stages[f]->read(target(kVm[f], "d"), back, off) != 0 || back != data) {
            ++failures;
          }
        }
      });
      threads.emplace_back([&, f] {  // reader: blocks 16..63, never written
        std::mt19937_64 rng(f + 20);
        for (int i = 0; i < 1500; ++i) {
          const std::uint64_t off = 16 * kBlock + 512 * (rng() % (48 * kBlock / 512 - 64));
          std::vector<std::byte> got(512 * (1 + rng() % 63));
          if (r.stages[f]->read(target(kVm[f], "d"), got, off) != 0 ||
              !std::equal(got.begin(), got.end(), templ_copy.begin() + static_cast<long>(off))) {
            ++failures;
          }
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(failures.load(), 0) << "cow " << cow;
    EXPECT_FALSE(r.cache->check());
    for (std::size_t f = 0; f < 2; ++f)
      EXPECT_EQ(r.read(f, kVm[f], 0, 1 << 20), r.truth(f, 0, 1 << 20));
  }
}

}  // namespace
}  // namespace v2p::cache
