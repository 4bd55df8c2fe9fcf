// The agent's map-change log on its own: replay rebuilds the map the change feed described,
// exactly; a torn or corrupt record ends the replay there and is cut off; another epoch is
// skipped whole.
#include "agent/map_log.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "correlator/map_changes.hpp"

namespace v2p::agent {
namespace {

const VdiskKey kDisk{VmId{1}, VdiskId{1}};
const VdiskKey kOther{VmId{2}, VdiskId{2}};
const DeviceId kDev = DeviceId::from_major_minor(8, 16);
constexpr std::size_t kHeader = 16;
constexpr std::size_t kChangeRecord = 8 + 64 + 4;  // frame header, payload, CRC

Mapping at(std::uint64_t voffset, std::uint64_t length, std::uint64_t sector, float conf = 1) {
  return Mapping{VirtualOffset{voffset}, length, kDev, PhysicalSector{sector}, voffset + 7, conf};
}

// A live map written through the change feed, every change logged as the agent logs it.
struct Logged {
  explicit Logged(const std::filesystem::path& p, std::uint32_t epoch = 3) : log(p, epoch, false) {
    writer.set_observer([this](const MapChange& c) {
      const auto e = map.find(c.vdisk, c.voffset);
      log.change(c, e ? e->last_seen_ns : 0, e ? e->confidence : 1);
    });
  }
  V2PMap map;
  correlator::MapWriter writer{map};
  MapLogWriter log;
};

struct Replayed {
  V2PMap map;
  std::vector<VdiskDeclaration> declared;
  std::vector<std::uint32_t> backends;
  MapLogReplay r;
  Replayed(const std::filesystem::path& p, std::uint32_t epoch) {
    r = replay_map_log(p, epoch,
                       {map, [this](const VdiskDeclaration& d) { declared.push_back(d); },
                        [this](std::uint32_t t) { backends.push_back(t); }});
  }
};

class MapLogTest : public ::testing::Test {
 protected:
  void TearDown() override { std::filesystem::remove(path_); }
  // Three changes: first sight, a copy-on-write relocation of half of it, a discard.
  void three_changes(Logged& l) {
    l.writer.map(kDisk, at(0, 8192, 100));
    l.log.flush(false);
    l.writer.map(kDisk, at(4096, 4096, 900, 0.5F));
    l.log.flush(false);
    l.writer.unmap(kDisk, VirtualOffset{0}, 1024);
    l.log.flush(false);
  }
  std::filesystem::path path_ = std::filesystem::temp_directory_path() /
                                ("v2p-map-log-" + std::to_string(::getpid()) + ".log");
};

TEST_F(MapLogTest, ReplayRebuildsTheMapExactly) {
  Logged l(path_);
  three_changes(l);
  // Another vdisk takes sectors the first one had: replay must evict them as the live map did.
  l.writer.map(kOther, at(65536, 4096, 104));
  l.log.declare({1, 1, "vm1", "disk0", "/img"});
  l.log.backend(4242);
  l.writer.map({VmId{3}, VdiskId{3}}, at(0, 4096, 5000));
  l.log.drop({VmId{3}, VdiskId{3}});
  l.log.flush(true);
  Replayed r(path_, 3);
  EXPECT_TRUE(r.r.matched);
  EXPECT_EQ(r.r.why, "");
  EXPECT_EQ(r.r.records, 8u);
  ASSERT_FALSE(l.map.extents(kDisk).empty());
  EXPECT_EQ(r.map.extents(kDisk), l.map.extents(kDisk));
  EXPECT_EQ(r.map.extents(kOther), l.map.extents(kOther));
  EXPECT_TRUE(r.map.extents({VmId{3}, VdiskId{3}}).empty());
  ASSERT_EQ(r.declared.size(), 1u);
  EXPECT_EQ(r.declared[0].vdisk_name, "disk0");
  EXPECT_EQ(r.backends, std::vector<std::uint32_t>{4242});
}

TEST_F(MapLogTest, ATornLastRecordRestoresEverythingBeforeIt) {
  V2PMap two_changes;
  {
    Logged l(path_);
    three_changes(l);
  }
  {
    Logged expected(path_.string() + ".x");
    expected.writer.map(kDisk, at(0, 8192, 100));
    expected.writer.map(kDisk, at(4096, 4096, 900, 0.5F));
    two_changes = expected.map;
    std::filesystem::remove(path_.string() + ".x");
  }
  std::filesystem::resize_file(path_, kHeader + 3 * kChangeRecord - 5);
  {
    Replayed r(path_, 3);
    EXPECT_EQ(r.r.records, 2u);
    EXPECT_EQ(r.r.why, "torn record");
    EXPECT_EQ(r.r.bad_tail, kChangeRecord - 5);
    EXPECT_EQ(r.map.extents(kDisk), two_changes.extents(kDisk));
  }
  // Cut at the last good record, so what the writer appends next is reached by replay.
  EXPECT_EQ(std::filesystem::file_size(path_), kHeader + 2 * kChangeRecord);
  {
    MapLogWriter w(path_, 3, true);
    w.drop(kDisk);
    w.flush(false);
  }
  Replayed again(path_, 3);
  EXPECT_EQ(again.r.records, 3u);
  EXPECT_EQ(again.r.why, "");
  EXPECT_TRUE(again.map.extents(kDisk).empty());
}

TEST_F(MapLogTest, ACorruptRecordInTheMiddleStopsTheReplayThere) {
  V2PMap first;
  {
    Logged l(path_);
    l.writer.map(kDisk, at(0, 8192, 100));
    first = l.map;
    l.writer.map(kDisk, at(4096, 4096, 900, 0.5F));
    l.writer.unmap(kDisk, VirtualOffset{0}, 1024);
    l.log.flush(false);
  }
  {
    std::fstream f(path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(kHeader + kChangeRecord + 8 + 24));  // 2nd one's sector
    f.put('\x55');
  }
  Replayed r(path_, 3);
  EXPECT_EQ(r.r.records, 1u);
  EXPECT_EQ(r.r.why, "record checksum mismatch");
  EXPECT_EQ(r.r.bad_tail, 2 * kChangeRecord);
  EXPECT_EQ(r.map.extents(kDisk), first.extents(kDisk));  // never the corrupt sector
  EXPECT_EQ(std::filesystem::file_size(path_), kHeader + kChangeRecord);
}

TEST_F(MapLogTest, ALengthBeyondTheBoundIsRefusedBeforeAnythingIsRead) {
  {
    Logged l(path_);
    l.writer.map(kDisk, at(0, 8192, 100));
    l.log.flush(false);
  }
  {
    std::fstream f(path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(kHeader + 4));
    const std::uint32_t huge = 0xFFFFFFF0u;
    f.write(reinterpret_cast<const char*>(&huge), sizeof huge);
  }
  Replayed r(path_, 3);
  EXPECT_EQ(r.r.records, 0u);
  EXPECT_EQ(r.r.why, "record length 4294967280 is out of bounds");
  EXPECT_TRUE(r.map.extents(kDisk).empty());
  EXPECT_EQ(std::filesystem::file_size(path_), kHeader);
}

TEST_F(MapLogTest, ALogOfAnotherEpochIsSkippedAndLeftAlone) {
  {
    Logged l(path_, 3);
    three_changes(l);
  }
  Replayed r(path_, 4);  // the snapshot already holds these changes
  EXPECT_FALSE(r.r.matched);
  EXPECT_EQ(r.r.records, 0u);
  EXPECT_TRUE(r.map.extents(kDisk).empty());
  EXPECT_EQ(std::filesystem::file_size(path_), kHeader + 3 * kChangeRecord);
  // Rotation: an empty log of the new epoch, nothing of the old one replayed under it.
  MapLogWriter w(path_, 3, true);
  w.change(MapChange{}, 0, 1);  // buffered before the snapshot: the snapshot has it
  w.rotate(4);
  w.flush(true);
  EXPECT_EQ(std::filesystem::file_size(path_), kHeader);
  EXPECT_TRUE(Replayed(path_, 4).r.matched);
}

TEST_F(MapLogTest, AMissingOrHeaderlessLogIsEmpty) {
  EXPECT_EQ(Replayed(path_, 0).r.records, 0u);
  std::ofstream(path_) << "V2PM";
  Replayed r(path_, 0);
  EXPECT_FALSE(r.r.matched);
  EXPECT_EQ(r.r.why, "log header is truncated");
}

}  // namespace
}  // namespace v2p::agent
