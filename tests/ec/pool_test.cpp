// The pool end to end on temporary directories: reads survive up to m lost stores in every way a
// store can be lost, m + 1 gives an error and never wrong bytes, scrub, rebuild and evacuation
// restore full redundancy.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <random>

#include "common/error.hpp"
#include "ec/pool.hpp"
#include "pool_fixture.hpp"

namespace v2p::ec {
namespace {

using testing::Damage;
using testing::TempPool;
namespace fs = std::filesystem;

const VdiskKey kDisk{VmId{1}, VdiskId{0}};

// What the vdisk should hold: written bytes, and which of them were written.
struct Model {
  std::vector<std::uint8_t> bytes;
  std::vector<bool> written;
  explicit Model(std::size_t size) : bytes(size), written(size, false) {}
  void write(std::uint64_t off, const std::vector<std::uint8_t>& b) {
    std::copy(b.begin(), b.end(), bytes.begin() + static_cast<std::ptrdiff_t>(off));
    std::fill_n(written.begin() + static_cast<std::ptrdiff_t>(off), b.size(), true);
  }
};

// 3.5 MiB in writes of random size and offset, then overwrites of parts of them.
Model fill(Pool& pool, std::uint32_t seed = 1) {
  constexpr std::size_t kSize = 3584U << 10;
  Model m(kSize);
  std::mt19937 gen(seed);
  std::uint64_t off = 0;
  while (off < kSize) {
    const std::size_t len = std::min<std::size_t>(kSize - off, 1 + gen() % (100U << 10));
    const auto b = testing::pattern(off, len);
    pool.write(kDisk, VirtualOffset{off}, b);
    m.write(off, b);
    off += len;
  }
  for (int i = 0; i < 20; ++i) {
    const std::uint64_t o = gen() % (kSize - 70000);
    const auto b = testing::pattern(1000 + i, 1 + gen() % 70000);
    pool.write(kDisk, VirtualOffset{o}, b);
    m.write(o, b);
  }
  pool.flush();
  return m;
}

// Reads the vdisk in 48 KiB pieces (crossing blocks and chunks); counts failures, and fails the
// test on any wrong byte.
int check(Pool& pool, const Model& m, const std::string& what, std::string* first_error = nullptr) {
  int failures = 0;
  constexpr std::size_t kStep = 48U << 10;
  for (std::size_t off = 0; off < m.bytes.size(); off += kStep) {
    const std::size_t len = std::min(kStep, m.bytes.size() - off);
    auto r = pool.read(kDisk, VirtualOffset{off}, len);
    if (!r.ok()) {
      ++failures;
      if (first_error && first_error->empty()) *first_error = r.error();
      continue;
    }
    EXPECT_TRUE(std::equal(r.value().begin(), r.value().end(),
                           m.bytes.begin() + static_cast<std::ptrdiff_t>(off)))
        << what << ": wrong bytes at " << off;
  }
  return failures;
}

TEST(EcPool, ReadsBackAfterReopen) {
  TempPool t(6, {4, 2});
  Model m(0);
  {
    Pool pool(t.config);
    m = fill(pool);
    EXPECT_EQ(check(pool, m, "open"), 0);
  }
  Pool pool(t.config);
  EXPECT_EQ(check(pool, m, "reopened"), 0);
  const auto s = pool.status();
  ASSERT_EQ(s.vms.size(), 1U);
  EXPECT_EQ(s.vms[0].protected_bytes, m.bytes.size());
  EXPECT_GE(s.vms[0].stored_bytes, m.bytes.size() * 6 / 4);
  EXPECT_EQ(s.vms[0].chunks_missing, 0U);
  EXPECT_EQ(s.vms[0].layouts.at("4+2"), s.containers);
  EXPECT_GT(s.reads.healthy, 0U);
  EXPECT_EQ(s.reads.degraded, 0U);
}

TEST(EcPool, UnflushedDataIsNotThereAfterReopen) {
  TempPool t(6, {4, 2});
  {
    Pool pool(t.config);
    pool.write(kDisk, VirtualOffset{0}, testing::pattern(1, 4096));
    pool.flush();
    pool.write(kDisk, VirtualOffset{8192}, testing::pattern(2, 4096));
  }
  Pool pool(t.config);
  EXPECT_TRUE(pool.read(kDisk, VirtualOffset{0}, 4096).ok());
  auto r = pool.read(kDisk, VirtualOffset{8192}, 4096);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("not in the ec pool"), std::string::npos) << r.error();
}

// Every set of up to m stores, lost in every way, with the pool open and after a reopen.
TEST(EcPool, UpToMLostStoresReadBackExactly) {
  TempPool t(6, {4, 2});
  Model m(0);
  {
    Pool pool(t.config);
    m = fill(pool);
  }
  std::vector<std::vector<std::uint32_t>> sets;
  for (std::uint32_t a = 1; a <= 6; ++a) {
    sets.push_back({a});
    for (std::uint32_t b = a + 1; b <= 6; ++b) sets.push_back({a, b});
  }
  for (const auto& lost : sets) {
    const testing::StoreBackup backup(t, lost);
    for (std::size_t way = 0; way < std::size(testing::kAllDamage); ++way) {
      // Mix the ways when two stores go: the second one is lost the next way round.
      std::string what = "lost";
      for (std::size_t i = 0; i < lost.size(); ++i) {
        const auto how = testing::kAllDamage[(way + i) % std::size(testing::kAllDamage)];
        testing::damage(t, lost[i], how);
        // Appends, not `" " + std::to_string(…) + …`: g++ 12 -O3 misreads that temporary
        // (-Wrestrict false positive, GCC PR105329).
        what += ' ';
        what += std::to_string(lost[i]);
        what += " (";
        what += testing::to_string(how);
        what += ')';
      }
      {
        Pool pool(t.config);
        EXPECT_EQ(check(pool, m, what), 0) << what;
      }
      backup.restore();
    }
  }
}

// A chunk whose read never answers (a FIFO nobody writes: open() blocks, like a hung store):
// after hedge_delay the read goes to the other chunks and returns the right bytes.
TEST(EcPool, HedgedReadDoesNotWaitForAHungChunk) {
  TempPool t(6, {4, 2});
  t.config.hedge_delay = std::chrono::milliseconds(20);
  auto pool = std::make_unique<Pool>(t.config);
  const auto data = testing::pattern(3, 200000);
  pool->write(kDisk, VirtualOffset{0}, data);
  pool->flush();
  fs::path hung;
  for (std::uint32_t s = 1; s <= 6 && hung.empty(); ++s) {
    for (const auto& f : t.chunk_files(s)) {
      if (f.extension() == ".00") hung = f;
    }
  }
  ASSERT_FALSE(hung.empty());
  fs::remove(hung);
  ASSERT_EQ(::mkfifo(hung.c_str(), 0600), 0);
  const auto t0 = std::chrono::steady_clock::now();
  auto r = pool->read(kDisk, VirtualOffset{0}, 1000);  // lies in data chunk 0
  const auto waited = std::chrono::steady_clock::now() - t0;
  const auto s = pool->status();
  // Release the readers stuck in open(), and any still to come: O_RDWR on a FIFO never blocks
  // and counts as a writer. Kept open until the pool's workers have finished.
  const int fd = ::open(hung.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  pool.reset();
  ::close(fd);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_TRUE(std::equal(r.value().begin(), r.value().end(), data.begin()));
  EXPECT_LT(waited, std::chrono::seconds(2));
  EXPECT_GE(waited, std::chrono::milliseconds(20));
  EXPECT_EQ(s.reads.hedged, 1U);
}

// A degraded read first decodes just the wanted stripe rows; when a source chunk is corrupt in
// exactly those rows the block CRC catches it, and the whole-chunk pass leaves that chunk out.
TEST(EcPool, CorruptSourceRowsFallBackToWholeChunks) {
  TempPool t(6, {4, 2});
  Pool pool(t.config);
  const auto data = testing::pattern(8, 400000);  // one container, chunks of 100032 bytes
  pool.write(kDisk, VirtualOffset{0}, data);
  pool.flush();
  auto find = [&](const std::string& suffix) {
    for (std::uint32_t s = 1; s <= 6; ++s) {
      for (const auto& f : t.chunk_files(s)) {
        if (f.extension() == suffix) return f;
      }
    }
    return fs::path();
  };
  fs::remove(find(".00"));
  {
    // Parity chunk 4, the rows of the first block (bytes 0..16383 of every chunk).
    std::fstream io(find(".04"), std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(64 + 5000);
    io.put('\x77');
  }
  auto r = pool.read(kDisk, VirtualOffset{0}, 16384);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_TRUE(std::equal(r.value().begin(), r.value().end(), data.begin()));
  EXPECT_EQ(pool.status().reads.degraded, 1U);
}

TEST(EcPool, MPlusOneLostGivesAClearErrorAndNeverWrongBytes) {
  TempPool t(6, {4, 2});
  Model m(0);
  {
    Pool pool(t.config);
    m = fill(pool);
  }
  for (auto how : testing::kAllDamage) {
    const testing::StoreBackup backup(t, {1, 3, 5});
    for (std::uint32_t s : {1U, 3U, 5U}) testing::damage(t, s, how);
    {
      Pool pool(t.config);
      std::string error;
      const int failures = check(pool, m, testing::to_string(how), &error);
      EXPECT_GT(failures, 0) << testing::to_string(how);
      EXPECT_NE(error.find("chunks are readable, 4 needed"), std::string::npos) << error;
    }
    backup.restore();
  }
}

TEST(EcPool, ScrubRepairsEveryBadChunkAndRemovesOrphans) {
  TempPool t(6, {4, 2});
  Model m(0);
  {
    Pool pool(t.config);
    m = fill(pool);
  }
  testing::damage(t, 2, Damage::kCorruptPayload);
  testing::damage(t, 4, Damage::kDeleteChunks);
  const auto orphan = t.store(5) / "chunks" / "00000000000fffff.03";
  fs::copy_file(t.chunk_files(5).front(), orphan);
  std::ofstream(t.store(6) / "chunks" / "0000000000000001.02.tmp") << "left by a crash";
  {
    Pool pool(t.config);
    const auto rep = pool.scrub();
    EXPECT_EQ(rep.containers, pool.status().containers);
    EXPECT_EQ(rep.chunks_checked, rep.containers * 6);
    EXPECT_EQ(rep.chunks_bad, rep.chunks_repaired);
    EXPECT_EQ(rep.chunks_bad, t.chunk_files(2).size() + t.chunk_files(4).size());
    EXPECT_EQ(rep.unrepairable, 0U);
    EXPECT_EQ(rep.orphans_removed, 2U);
    EXPECT_FALSE(fs::exists(orphan));
    const auto again = pool.scrub();
    EXPECT_EQ(again.chunks_bad, 0U);
  }
  // Full redundancy is back: two other stores can go now.
  testing::damage(t, 1, Damage::kDirectoryGone);
  testing::damage(t, 3, Damage::kDeleteChunks);
  Pool pool(t.config);
  EXPECT_EQ(check(pool, m, "after scrub"), 0);
}

TEST(EcPool, RebuildOntoAnEmptyReplacementStore) {
  TempPool t(7, {4, 2});  // 7: with one store offline, 4+2 still has 6 places
  Model m(0);
  std::size_t chunks_on_3 = 0;
  {
    Pool pool(t.config);
    m = fill(pool);
    chunks_on_3 = t.chunk_files(3).size();
  }
  ASSERT_GT(chunks_on_3, 0U);
  testing::damage(t, 3, Damage::kEmptyDirectory);  // the disk was replaced
  {
    Pool pool(t.config);
    auto s = pool.status();
    const auto& st = *std::find_if(s.stores.begin(), s.stores.end(),
                                   [](const StoreStatus& x) { return x.id == 3; });
    EXPECT_EQ(st.chunks_expected, chunks_on_3);
    EXPECT_EQ(st.chunks_present, 0U);
    EXPECT_NE(st.state.find("no identity"), std::string::npos) << st.state;
    EXPECT_EQ(check(pool, m, "store 3 replaced, not rebuilt"), 0);
    // Writes go around the offline store.
    pool.write(kDisk, VirtualOffset{m.bytes.size()}, testing::pattern(9, 100000));
    pool.flush();
    EXPECT_EQ(t.chunk_files(3).size(), 0U);
    EXPECT_EQ(pool.status().stores.size(), 7U);
  }
  {
    Pool pool(t.config);
    std::uint64_t last_done = 0, calls = 0;
    const auto rep = pool.rebuild(3, [&](std::uint64_t done, std::uint64_t total) {
      EXPECT_EQ(done, last_done + 1);
      EXPECT_EQ(total, chunks_on_3);
      last_done = done;
      ++calls;
    });
    EXPECT_EQ(rep.chunks_total, chunks_on_3);
    EXPECT_EQ(rep.chunks_rebuilt, chunks_on_3);
    EXPECT_EQ(rep.failed, 0U);
    EXPECT_EQ(calls, chunks_on_3);
    EXPECT_EQ(t.chunk_files(3).size(), chunks_on_3);
  }
  testing::damage(t, 1, Damage::kDeleteChunks);
  testing::damage(t, 6, Damage::kCorruptHeader);
  Pool pool(t.config);
  EXPECT_EQ(check(pool, m, "rebuilt, then 1 and 6 lost"), 0);
}

TEST(EcPool, BackgroundRebuildReportsProgress) {
  TempPool t(6, {4, 2});
  Model m(0);
  {
    Pool pool(t.config);
    m = fill(pool);
  }
  testing::damage(t, 5, Damage::kEmptyDirectory);
  Pool pool(t.config);
  pool.start_rebuild(5);
  // Foreground reads go on while it runs.
  EXPECT_EQ(check(pool, m, "during rebuild"), 0);
  pool.wait_rebuild();
  const auto s = pool.status();
  EXPECT_FALSE(s.rebuild.running);
  EXPECT_EQ(s.rebuild.store, 5U);
  EXPECT_GT(s.rebuild.total, 0U);
  EXPECT_EQ(s.rebuild.done, s.rebuild.total);
  EXPECT_TRUE(s.rebuild.error.empty()) << s.rebuild.error;
  for (const auto& st : s.stores) EXPECT_EQ(st.chunks_present, st.chunks_expected) << st.id;
}

TEST(EcPool, RebuildRefusesANonEmptyReplacement) {
  TempPool t(6, {4, 2});
  {
    Pool pool(t.config);
    (void)fill(pool);
  }
  testing::damage(t, 2, Damage::kEmptyDirectory);
  std::ofstream(t.store(2) / "somebody-elses-file") << "x";
  Pool pool(t.config);
  EXPECT_THROW((void)pool.rebuild(2), Error);
  EXPECT_FALSE(fs::exists(t.store(2) / "v2p-ec-store"));
}

TEST(EcPool, EvacuatedStoreCanLeaveTheConfiguration) {
  TempPool t(7, {4, 2});
  Model m(0);
  {
    Pool pool(t.config);
    m = fill(pool);
    ASSERT_GT(t.chunk_files(1).size(), 0U);
    const auto rep = pool.evacuate(1);
    EXPECT_EQ(rep.failed, 0U);
    EXPECT_EQ(rep.chunks_rebuilt, rep.chunks_total);
    EXPECT_EQ(t.chunk_files(1).size(), 0U);
  }
  auto cfg = t.config;
  cfg.stores.erase(cfg.stores.begin());
  testing::damage(t, 2, Damage::kDeleteChunks);
  testing::damage(t, 7, Damage::kCorruptPayload);
  Pool pool(cfg);
  EXPECT_EQ(check(pool, m, "store 1 evacuated and removed, 2 and 7 lost"), 0);
  for (const auto& st : pool.status().stores) {
    if (st.id == 1) {
      EXPECT_EQ(st.chunks_expected, 0U);
    }
  }
}

TEST(EcPool, LayoutPerVmAndVdisk) {
  TempPool t(14, {4, 2});
  t.config.vm_layouts[2] = {8, 3};
  t.config.vdisk_layouts[{2, 1}] = {10, 4};
  Pool pool(t.config);
  const VdiskKey a{VmId{1}, VdiskId{0}}, b{VmId{2}, VdiskId{0}}, c{VmId{2}, VdiskId{1}};
  for (const auto& key : {a, b, c}) {
    pool.write(key, VirtualOffset{0},
               testing::pattern(key.vdisk.value() + 10 * key.vm.value(), 300000));
  }
  pool.flush();
  const auto s = pool.status();
  ASSERT_EQ(s.vms.size(), 2U);
  EXPECT_EQ(s.vms[0].layouts, (std::map<std::string, std::uint64_t>{{"4+2", 1}}));
  EXPECT_EQ(s.vms[1].layouts, (std::map<std::string, std::uint64_t>{{"8+3", 1}, {"10+4", 1}}));
  // 10+4 survives 4 lost stores.
  for (std::uint32_t id : {1U, 2U, 3U, 4U}) testing::damage(t, id, Damage::kDeleteChunks);
  auto r = pool.read(c, VirtualOffset{0}, 300000);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r.value(), testing::pattern(21, 300000));
}

TEST(EcPool, RefusesSharedFailureDomainsUnlessAllowed) {
  TempPool t(6, {4, 2});
  t.config.allow_shared_domains = false;
  Pool pool(t.config);
  pool.write(kDisk, VirtualOffset{0}, testing::pattern(1, 4096));
  try {
    pool.flush();
    FAIL() << "six chunks placed on one disk";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("distinct failure domains"), std::string::npos)
        << e.what();
  }
  // Nothing was acknowledged, nothing was lost: allowed now, the buffered block seals.
  EXPECT_EQ(pool.status().unsealed_bytes, 4096U);
}

// What an adoption killed half-way leaves (temporary identity, empty chunk directory) does not
// make the store look foreign or non-empty.
TEST(EcPool, HalfAdoptedStoreIsAdoptedAgain) {
  TempPool t(6, {4, 2});
  fs::create_directories(t.store(3) / "chunks");
  std::ofstream(t.store(3) / "v2p-ec-store.tmp") << "v2p-ec-store 1\n";
  Pool pool(t.config);
  pool.write(kDisk, VirtualOffset{0}, testing::pattern(1, 5000));
  pool.flush();
  EXPECT_EQ(t.chunk_files(3).size(), 1U);
}

TEST(EcPool, SecondProcessCannotOpenThePool) {
  TempPool t(6, {4, 2});
  Pool pool(t.config);
  EXPECT_THROW(Pool second(t.config), Error);
}

}  // namespace
}  // namespace v2p::ec
