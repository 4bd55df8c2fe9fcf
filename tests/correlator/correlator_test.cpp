#include "correlator/correlator.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "correlator/bio.hpp"
#include "v2p/tag.hpp"

namespace v2p::correlator {
namespace {

constexpr std::uint32_t kVfilter = 100;
constexpr std::uint32_t kBackend = 200;
const DeviceId kDev = DeviceId::from_major_minor(7, 0);
const VdiskKey kKey{VmId{1}, VdiskId{2}};

ContextRecord record(std::uint16_t slot, std::uint64_t submit, std::uint64_t complete,
                     std::uint64_t voffset, std::uint32_t length, IoOp op = IoOp::kWrite,
                     std::uint32_t tgid = kVfilter) {
  ContextRecord r;
  r.submit_ns = submit;
  r.complete_ns = complete;
  r.voffset = voffset;
  r.length = length;
  r.tgid = tgid;
  r.vm_id = 1;
  r.vdisk_id = 2;
  r.slot = slot;
  r.op = static_cast<std::uint8_t>(op);
  return r;
}

PhysEvent bio(std::uint16_t slot, std::uint64_t ts, std::uint64_t sector, std::uint32_t bytes,
              IoOp op = IoOp::kWrite, std::uint32_t tgid = kVfilter) {
  PhysEvent e;
  e.ts_ns = ts;
  e.sector = sector;
  e.bytes = bytes;
  e.dev = kDev.kernel();
  e.tgid = tgid;
  e.tid = tgid;
  e.ioprio = tag::ioprio_for_slot(slot);
  e.op = static_cast<std::uint8_t>(op);
  e.kind = static_cast<std::uint8_t>(PhysEventKind::kQueue);
  return e;
}

TEST(Correlator, EventsBeforeTheRecordJoinWhenItArrives) {
  Correlator c;
  c.on_event(bio(5, 1100, 8000, 4096));
  c.on_event(bio(5, 1050, 1000, 4096));  // issued first, delivered second
  EXPECT_EQ(c.stats().pending_events, 2u);
  c.on_record(record(5, 1000, 2000, 65536, 8192));
  const auto e = c.map().extents(kKey);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].voffset, VirtualOffset{65536});
  EXPECT_EQ(e[0].sector, PhysicalSector{1000});
  EXPECT_EQ(e[1].voffset, VirtualOffset{65536 + 4096});
  EXPECT_EQ(e[1].sector, PhysicalSector{8000});
  EXPECT_EQ(e[0].confidence, 1.0f);
  const auto s = c.stats();
  EXPECT_EQ(s.joined_exact, 2u);
  EXPECT_EQ(s.pending_events, 0u);
  EXPECT_EQ(s.pending_records, 0u);
}

TEST(Correlator, RecordBeforeEventsIsPlacedWhenTheBytesAddUp) {
  Correlator c;
  c.on_record(record(5, 1000, 2000, 0, 8192));
  c.on_event(bio(5, 1500, 64, 4096));
  EXPECT_EQ(c.map().extent_count(), 0u) << "offsets are only known once every bio is in";
  c.on_event(bio(5, 1400, 8, 4096));
  ASSERT_EQ(c.map().extent_count(), 2u);
  EXPECT_EQ(c.map().find(kKey, VirtualOffset{0})->sector, PhysicalSector{8});
}

TEST(Correlator, ReusedSlotIsTellApartByWindow) {
  Correlator c;
  c.on_event(bio(3, 1500, 100, 4096));
  c.on_event(bio(3, 2500, 200, 4096));
  c.on_record(record(3, 2000, 3000, 8192, 4096));
  c.on_record(record(3, 1000, 1900, 0, 4096));
  EXPECT_EQ(c.map().find(kKey, VirtualOffset{0})->sector, PhysicalSector{100});
  EXPECT_EQ(c.map().find(kKey, VirtualOffset{8192})->sector, PhysicalSector{200});
}

TEST(Correlator, UntaggedIoOfOtherProcessesIsNeverAttributed) {
  Correlator c;
  c.on_record(record(1, 1000, 2000, 0, 4096));
  c.on_event(bio(0, 1500, 77, 4096, IoOp::kWrite, 999));       // jbd2
  c.on_event(bio(0, 1500, 78, 4096, IoOp::kWrite, kVfilter));  // metadata read-modify-write
  c.on_event(bio(2, 1500, 79, 4096));                          // tagged, no record ever
  c.advance(2000 + kDefaultHorizonNs + 1);
  const auto s = c.stats();
  EXPECT_EQ(s.unattributed, 3u);
  EXPECT_EQ(s.incomplete_requests, 1u);
  EXPECT_EQ(c.map().extent_count(), 0u);
}

TEST(Correlator, TrimUnmaps) {
  Correlator c;
  c.on_record(record(1, 1000, 2000, 0, 16384));
  c.on_event(bio(1, 1500, 0, 16384));
  c.on_record(record(2, 3000, 4000, 4096, 4096, IoOp::kDiscard));
  const auto e = c.map().extents(kKey);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(c.map().mapped_bytes(kKey), 12288u);
  EXPECT_EQ(c.stats().trims, 1u);
}

TEST(Correlator, ReadOverHolesIsNotGuessed) {
  Correlator c;
  c.on_record(record(1, 1000, 2000, 0, 16384, IoOp::kRead));
  c.on_event(bio(1, 1500, 800, 4096, IoOp::kRead));
  c.advance(2000 + kDefaultHorizonNs + 1);
  EXPECT_EQ(c.map().extent_count(), 0u);
  EXPECT_EQ(c.stats().ambiguous_reads, 1u);
  EXPECT_EQ(c.stats().joined_exact, 1u);
}

TEST(Correlator, SplitRemainderIsNotCountedTwice) {
  Correlator c;
  c.on_event(bio(1, 1100, 0, 8192));
  c.on_event(bio(1, 1101, 8, 4096));  // the block layer queued the split remainder again
  c.on_event(bio(1, 1200, 64, 4096));
  c.on_record(record(1, 1000, 2000, 0, 12288));
  c.advance(2000 + kDefaultHorizonNs + 1);
  EXPECT_EQ(c.map().find(kKey, VirtualOffset{8192})->sector, PhysicalSector{64});
}

// A thread whose own ioprio is the tag (the synchronous CoW path on btrfs) also tags the file
// system's metadata and the flush its fdatasync submits: none of it is the request's data.
TEST(Correlator, TaggedMetadataAndFlushBiosAreNotData) {
  Correlator c;
  auto meta = bio(5, 1050, 900000, 16384);
  meta.cmd_flags = kReqMeta;
  auto dup = bio(5, 1060, 900032, 16384);
  dup.cmd_flags = kReqMeta;
  auto flush = bio(5, 1200, 0, 0);
  flush.cmd_flags = 1u << 18;  // REQ_PREFLUSH, no payload
  auto super = bio(5, 1300, 128, 4096);
  super.cmd_flags = kReqMeta | (1u << 17) | (1u << 18);
  c.on_event(meta);
  c.on_event(dup);
  c.on_event(bio(5, 1100, 8000, 4096));
  c.on_event(flush);
  c.on_record(record(5, 1000, 2000, 65536, 8192));
  EXPECT_EQ(c.map().extent_count(), 0u) << "metadata bytes must not complete the request";
  c.on_event(bio(5, 1150, 1000, 4096));
  c.on_event(super);
  const auto e = c.map().extents(kKey);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].voffset, VirtualOffset{65536});
  EXPECT_EQ(e[0].sector, PhysicalSector{8000});
  EXPECT_EQ(e[1].voffset, VirtualOffset{65536 + 4096});
  EXPECT_EQ(e[1].sector, PhysicalSector{1000});
  const auto s = c.stats();
  EXPECT_EQ(s.metadata, 4u);
  EXPECT_EQ(s.unattributed, 4u);
  EXPECT_EQ(s.joined_exact, 2u);
  EXPECT_EQ(s.pending_events + s.pending_records, 0u);
  EXPECT_FALSE(c.map().whose(kDev, PhysicalSector{900000}));
}

// An opaque backend's bios carry no tag: they join the requests whose completion windows hold
// them. The correlator here waits 100 ns (not 250 ms) for those windows to settle, and keeps
// every window decision it makes.
class CorrelatorBackend : public ::testing::Test {
 protected:
  CorrelatorBackend() : c_(settle_after_100ns()) {
    c_.add_backend_process(kBackend);
    c_.set_window_observer([this](const WindowDecision& d) { decisions_.push_back(d); });
  }

  static Options settle_after_100ns() {
    Options o;
    o.window_settle_ns = 100;
    return o;
  }
  // The backend's write requests and the bios it issues (slot 0: untagged).
  static ContextRecord write(std::uint64_t submit, std::uint64_t complete, std::uint64_t voffset,
                             std::uint32_t length) {
    return record(0, submit, complete, voffset, length, IoOp::kWrite, kBackend);
  }
  static PhysEvent write_bio(std::uint64_t ts, std::uint64_t sector, std::uint32_t bytes) {
    return bio(0, ts, sector, bytes, IoOp::kWrite, kBackend);
  }

  Correlator c_;
  std::vector<WindowDecision> decisions_;
};

TEST_F(CorrelatorBackend, IoJoinsByCompletionWindowWithConfidence) {
  c_.on_record(write(1000, 2000, 0, 4096));
  c_.on_event(write_bio(1500, 40, 4096));
  c_.on_record(write(3000, 4000, 8192, 4096));
  c_.on_record(write(3100, 4100, 16384, 4096));
  c_.on_event(write_bio(3500, 400, 4096));
  c_.advance(10000);
  ASSERT_EQ(decisions_.size(), 2u);
  EXPECT_EQ(decisions_[0].confidence, 1.0f);
  EXPECT_EQ(decisions_[0].mapping.voffset, VirtualOffset{0});
  EXPECT_EQ(decisions_[1].candidates, 2u);
  EXPECT_FLOAT_EQ(decisions_[1].confidence, 0.5f);
  EXPECT_EQ(c_.stats().joined_window, 2u);
  EXPECT_TRUE(c_.map().whose(kDev, PhysicalSector{400}));
}

TEST_F(CorrelatorBackend, MetadataIsNotAssignedToARequest) {
  c_.on_record(write(1000, 2000, 0, 4096));
  auto meta = write_bio(1400, 40000, 4096);
  meta.cmd_flags = kReqMeta;
  c_.on_event(meta);
  c_.on_event(write_bio(1500, 40, 4096));
  // Unflagged backend I/O (a qcow2 table update) in the window: once the only candidate's bytes
  // are accounted for it is surplus, not data. Which of the two is the data is not known (a
  // qcow2 allocation writes its tables before the data, an L2 update comes after), so the one
  // assigned is right with probability 1/2, and says so.
  c_.on_event(write_bio(1600, 50000, 4096));
  c_.advance(10000);
  ASSERT_EQ(decisions_.size(), 1u);
  EXPECT_EQ(decisions_[0].mapping.sector, PhysicalSector{40});
  EXPECT_EQ(decisions_[0].confidence, 0.5f);
  const auto s = c_.stats();
  EXPECT_EQ(s.metadata, 1u);
  EXPECT_EQ(s.unattributed, 2u);
  EXPECT_EQ(c_.map().extent_count(), 1u);
}

// What qemu-storage-daemon does for a 1 MiB write into fresh qcow2 clusters (measured): two
// 64 KiB table clusters and a 512-byte header write, then the data, all unflagged and all inside
// the request's window. The data bios are shorter than the request, so their offsets would come
// from counting the bytes before them: with the table writes in front that is wrong, and nothing
// may be placed with confidence 1. Nothing is placed at all: the offsets are unknown.
TEST_F(CorrelatorBackend, TableWritesBeforeTheDataPlaceNothingWrongly) {
  c_.on_record(write(1000, 2000, 0, 1 << 20));
  c_.on_event(write_bio(1100, 263424, 65536));
  c_.on_event(write_bio(1200, 263680, 65536));
  c_.on_event(write_bio(1300, 263552, 512));
  c_.on_event(write_bio(1400, 263808, 512 << 10));
  c_.on_event(write_bio(1500, 264832, 512 << 10));
  c_.advance(10000);
  EXPECT_TRUE(decisions_.empty());
  EXPECT_EQ(c_.map().extent_count(), 0u);
  EXPECT_EQ(c_.stats().unplaced_window, 5u);
}

TEST(Correlator, RemapAndCompletionEventsAreNotPlaced) {
  Correlator c;
  auto e = bio(1, 1500, 10, 4096);
  e.kind = static_cast<std::uint8_t>(PhysEventKind::kComplete);
  c.on_event(e);
  EXPECT_EQ(c.stats().other_events, 1u);
  EXPECT_EQ(c.stats().events, 0u);
}

}  // namespace
}  // namespace v2p::correlator
