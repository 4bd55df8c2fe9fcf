// RemapTable and TierJournal: replay, torn tails, checksums, geometry, compaction.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>

#include "common/crc32c.hpp"
#include "common/error.hpp"
#include "policy/tier/tier_journal.hpp"
#include "tier_test_util.hpp"

namespace v2p::tier {
namespace {

const Geometry kGeo{1 << 16, 64, 8};

Placement fast(std::uint64_t slot) {
  return {Tier::kFast, FastSlot(slot)};
}
const Placement kSlow{};

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}
void spit(const std::filesystem::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << s;
}

TEST(RemapTable, SlotsBelongToOneExtent) {
  RemapTable t(kGeo);
  EXPECT_EQ(t.free_slot(), FastSlot(0));
  EXPECT_TRUE(t.place(ExtentIndex(5), fast(0)));
  EXPECT_FALSE(t.place(ExtentIndex(6), fast(0))) << "slot 0 is extent 5's";
  EXPECT_FALSE(t.place(ExtentIndex(64), fast(1))) << "past the vdisk";
  EXPECT_FALSE(t.place(ExtentIndex(6), fast(8))) << "past the fast file";
  EXPECT_EQ(t.owner(FastSlot(0)), ExtentIndex(5));
  EXPECT_EQ(t.free_slot(), FastSlot(1));
  EXPECT_TRUE(t.place(ExtentIndex(5), fast(3)));  // fast to fast frees the old slot
  EXPECT_FALSE(t.owner(FastSlot(0)).has_value());
  EXPECT_EQ(t.fast_count(), 1u);
  EXPECT_TRUE(t.place(ExtentIndex(5), kSlow));
  EXPECT_EQ(t.fast_count(), 0u);
  EXPECT_FALSE(t.owner(FastSlot(3)).has_value());
}

TEST(TierJournal, ReplaysCommittedMoves) {
  test::ScratchDir d;
  const auto p = d.path() / "j";
  {
    TierJournal j(p, kGeo);
    EXPECT_EQ(j.table().fast_count(), 0u);
    ASSERT_EQ(j.commit(ExtentIndex(3), fast(0), 1), 0);
    ASSERT_EQ(j.commit(ExtentIndex(9), fast(1), 2), 0);
    ASSERT_EQ(j.commit(ExtentIndex(3), kSlow, 3), 0);
    ASSERT_EQ(j.commit(ExtentIndex(12), fast(0), 4), 0);
    EXPECT_EQ(j.commit(ExtentIndex(13), fast(1), 5), -EINVAL) << "slot 1 is taken";
  }
  TierJournal j(p, kGeo);
  EXPECT_EQ(j.replay().records, 4u);
  EXPECT_EQ(j.replay().dropped_bytes, 0u);
  EXPECT_EQ(j.table().at(ExtentIndex(3)), kSlow);
  EXPECT_EQ(j.table().at(ExtentIndex(9)), fast(1));
  EXPECT_EQ(j.table().at(ExtentIndex(12)), fast(0));
  EXPECT_EQ(j.table().fast_count(), 2u);
  // Opening compacted it: header + one record per fast extent.
  EXPECT_EQ(std::filesystem::file_size(p), 3 * 64u);
  const auto c = read_journal(p);
  EXPECT_EQ(c.geometry, kGeo);
  EXPECT_EQ(c.table.at(ExtentIndex(9)), fast(1));
}

// Every prefix of a journal's bytes (a crash at any moment of an append) replays to the moves
// whose records are complete, never more, never an error.
TEST(TierJournal, EveryTornTailReplaysToTheCompleteRecords) {
  test::ScratchDir d;
  const auto p = d.path() / "j";
  std::vector<std::pair<ExtentIndex, Placement>> moves = {{ExtentIndex(1), fast(0)},
                                                          {ExtentIndex(2), fast(1)},
                                                          {ExtentIndex(1), kSlow},
                                                          {ExtentIndex(7), fast(0)},
                                                          {ExtentIndex(2), fast(5)}};
  {
    TierJournal j(p, kGeo);
    for (const auto& [e, to] : moves) ASSERT_EQ(j.commit(e, to, 0), 0);
  }
  const auto full = slurp(p);
  ASSERT_EQ(full.size(), 64u * 6);
  for (std::size_t cut = 64; cut <= full.size(); ++cut) {
    spit(p, full.substr(0, cut));
    const auto complete = (cut - 64) / 64;
    RemapTable expect(kGeo);
    for (std::size_t i = 0; i < complete; ++i) expect.place(moves[i].first, moves[i].second);
    const auto c = read_journal(p);
    EXPECT_EQ(c.report.records, complete) << "cut at " << cut;
    EXPECT_EQ(c.report.dropped_bytes, cut - 64 - complete * 64);
    for (std::uint64_t e = 0; e < kGeo.extents; ++e) {
      ASSERT_EQ(c.table.at(ExtentIndex(e)), expect.at(ExtentIndex(e))) << "cut " << cut;
    }
    // Opening for writing cuts the tail away; the next commit lands after the valid records.
    {
      TierJournal j(p, kGeo);
      EXPECT_EQ(std::filesystem::file_size(p) % 64, 0u);
      const auto slot = j.table().free_slot();
      ASSERT_TRUE(slot.has_value());
      ASSERT_EQ(j.commit(ExtentIndex(40), fast(slot->value()), 0), 0);
    }
    EXPECT_EQ(read_journal(p).table.at(ExtentIndex(40)).tier, Tier::kFast);
  }
}

TEST(TierJournal, AFlippedBitEndsTheReplayThere) {
  test::ScratchDir d;
  const auto p = d.path() / "j";
  {
    TierJournal j(p, kGeo);
    ASSERT_EQ(j.commit(ExtentIndex(1), fast(0), 0), 0);
    ASSERT_EQ(j.commit(ExtentIndex(2), fast(1), 0), 0);
    ASSERT_EQ(j.commit(ExtentIndex(3), fast(2), 0), 0);
  }
  auto bytes = slurp(p);
  bytes[2 * 64 + 20] ^= 0x10;  // the second move record's extent field
  spit(p, bytes);
  const auto c = read_journal(p);
  EXPECT_EQ(c.report.records, 1u);
  EXPECT_EQ(c.report.dropped_bytes, 2 * 64u);
  EXPECT_EQ(c.table.at(ExtentIndex(1)), fast(0));
  EXPECT_EQ(c.table.at(ExtentIndex(2)), kSlow);
  EXPECT_EQ(c.table.at(ExtentIndex(3)), kSlow) << "nothing after a bad record is trusted";
}

TEST(TierJournal, ARecordOutOfSequenceIsATail) {
  test::ScratchDir d;
  const auto p = d.path() / "j";
  {
    TierJournal j(p, kGeo);
    ASSERT_EQ(j.commit(ExtentIndex(1), fast(0), 0), 0);
    ASSERT_EQ(j.commit(ExtentIndex(2), fast(1), 0), 0);
  }
  auto bytes = slurp(p);
  // Duplicate record 1 after record 2: a valid CRC but the wrong sequence number.
  bytes += bytes.substr(64, 64);
  spit(p, bytes);
  const auto c = read_journal(p);
  EXPECT_EQ(c.report.records, 2u);
  EXPECT_EQ(c.report.dropped_bytes, 64u);
}

TEST(TierJournal, RefusesAnotherGeometryAndForeignFiles) {
  test::ScratchDir d;
  const auto p = d.path() / "j";
  { TierJournal j(p, kGeo); }
  EXPECT_THROW(TierJournal(p, Geometry{1 << 16, 65, 8}), Error);
  EXPECT_THROW(TierJournal(p, Geometry{1 << 17, 64, 8}), Error);
  spit(p, std::string(64, 'x'));
  EXPECT_THROW(TierJournal(p, kGeo), Error);
  EXPECT_THROW((void)read_journal(d.path() / "missing"), Error);
}

TEST(TierJournal, AnImpossiblePlacementIsCorruptionNotATail) {
  test::ScratchDir d;
  const auto p = d.path() / "j";
  const Geometry small{1 << 16, 64, 2};
  {
    TierJournal j(p, kGeo);
    ASSERT_EQ(j.commit(ExtentIndex(1), fast(5), 0), 0);
  }
  // Same records read as a journal of a 2-slot fast file: the header says 8, so patch the
  // header's slot count (and its CRC) to 2: slot 5 no longer exists.
  auto bytes = slurp(p);
  std::uint64_t two = 2;
  std::memcpy(bytes.data() + 32, &two, 8);
  const auto crc = crc32c(std::as_bytes(std::span(bytes.data(), 60)));
  std::memcpy(bytes.data() + 60, &crc, 4);
  spit(p, bytes);
  EXPECT_THROW(TierJournal(p, small), Error);
}

TEST(TierJournal, RandomHistoriesReplayToTheReferenceTable) {
  test::ScratchDir d;
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    std::mt19937_64 rng(seed);
    const auto p = d.path() / ("j" + std::to_string(seed));
    RemapTable ref(kGeo);
    {
      TierJournal j(p, kGeo);
      for (int i = 0; i < 200; ++i) {
        const ExtentIndex e(rng() % kGeo.extents);
        Placement to = kSlow;
        if (rng() % 2 == 0) {
          const auto s = ref.free_slot();
          if (!s) continue;
          to = fast(s->value());
        }
        if (rng() % 50 == 0) {
          ASSERT_EQ(j.compact(), 0);
        }
        const bool ok = ref.place(e, to);
        ASSERT_EQ(j.commit(e, to, 0) == 0, ok);
      }
    }
    const auto c = read_journal(p);
    for (std::uint64_t e = 0; e < kGeo.extents; ++e) {
      ASSERT_EQ(c.table.at(ExtentIndex(e)), ref.at(ExtentIndex(e))) << "seed " << seed;
    }
  }
}

}  // namespace
}  // namespace v2p::tier
