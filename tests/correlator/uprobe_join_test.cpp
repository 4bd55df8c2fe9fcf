// The passive-attach join without a kernel: hand-made uprobe, syscall and bio events through
// UprobeJoin into a real Correlator, checking what lands in the map and what is kept out of it.
#include <gtest/gtest.h>

#include <map>
#include <vector>

#include "correlator/correlator.hpp"
#include "correlator/uprobe_join.hpp"
#include "v2p/tag.hpp"

namespace v2p::correlator {
namespace {

constexpr std::uint32_t kPid = 100;
constexpr std::uint32_t kWorker = 101;
constexpr std::uint64_t kQcow = 0x1000, kFile = 0x2000, kOtherQcow = 0x3000;
constexpr std::uint64_t kMs = 1'000'000;
const DeviceId kDev = DeviceId::from_major_minor(7, 0);

class Join : public ::testing::Test {
 protected:
  Join() {
    UprobeJoin::Hooks h;
    h.node = [](std::uint32_t, std::uint64_t bs) -> std::optional<NodeInfo> {
      if (bs == kQcow) return NodeInfo{false, "qcow2", "/img/a.qcow2"};
      if (bs == kOtherQcow) return NodeInfo{false, "qcow2", "/img/b.qcow2"};
      if (bs == kFile) return NodeInfo{true, "file", "/img/a.qcow2"};
      return std::nullopt;
    };
    h.fd_path = [](std::uint32_t, std::uint64_t fd) -> std::optional<std::string> {
      return fd == 7 ? std::optional<std::string>("/img/a.qcow2") : std::nullopt;
    };
    h.vdisk = [](std::uint32_t, const NodeInfo& n) -> std::optional<VdiskKey> {
      return VdiskKey{VmId{1}, VdiskId{n.path == "/img/a.qcow2" ? 0u : 1u}};
    };
    h.on_record = [this](const ContextRecord& r) {
      records.push_back(r);
      corr.on_record(r);
    };
    h.on_event = [this](const PhysEvent& e) {
      events.push_back(e);
      corr.on_event(e);
    };
    join = std::make_unique<UprobeJoin>(std::move(h), 300 * kMs);
    join->add_process(kPid);
    corr.declare({1, 0, "vm", "a", "/img/a.qcow2"});
  }
  void layer(std::uint64_t ts, std::uint64_t node, std::uint64_t off, std::uint64_t bytes,
             std::uint64_t qiov, std::uint64_t qoff = 0) {
    join->on_layer({ts, kPid, kPid, node, off, bytes, qiov, qoff, true});
  }
  void syscall(std::uint64_t start, std::uint64_t end, std::uint64_t pos, std::int64_t bytes,
               bool data = true) {
    join->on_file_io({start, end, kPid, kWorker, 7, pos, bytes, true, data});
  }
  void bio(std::uint64_t ts, std::uint64_t sector, std::uint32_t bytes,
           std::uint32_t tid = kWorker) {
    PhysEvent e;
    e.ts_ns = ts;
    e.sector = sector;
    e.bytes = bytes;
    e.dev = kDev.kernel();
    e.tgid = kPid;
    e.tid = tid;
    e.op = static_cast<std::uint8_t>(IoOp::kWrite);
    e.cmd_flags = 1;  // REQ_OP_WRITE
    join->on_event(e);
  }
  const VdiskKey a{VmId{1}, VdiskId{0}};
  Correlator corr;
  std::unique_ptr<UprobeJoin> join;
  std::vector<ContextRecord> records;
  std::vector<PhysEvent> events;
};

TEST_F(Join, PlacesAGuestWriteThroughQcow2AtItsGuestOffset) {
  layer(1 * kMs, kQcow, 0x10000, 8192, 0xaaa);  // guest writes 8 KiB at 64 KiB
  layer(2 * kMs, kFile, 0x50000, 8192, 0xaaa);  // qcow2 puts it at 0x50000 in the file
  bio(4 * kMs, 1000, 8192);                     // the worker's bio, before its exit event
  syscall(3 * kMs, 5 * kMs, 0x50000, 8192);
  join->drain();
  corr.drain();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].voffset, 0x10000u);
  EXPECT_EQ(records[0].tgid, kWorker);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].tgid, kWorker);
  EXPECT_EQ(tag::slot_from_ioprio(events[0].ioprio), records[0].slot);
  const auto e = corr.map().find(a, VirtualOffset{0x11000});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->sector.value(), 1000u);
  EXPECT_FLOAT_EQ(e->confidence, 1.0f);
  EXPECT_EQ(corr.map().mapped_bytes(a), 8192u);
}

TEST_F(Join, PartOfATopRequestByItsQiovOffset) {
  layer(1 * kMs, kQcow, 0x0, 0x20000, 0xaaa);               // 128 KiB over two clusters
  layer(2 * kMs, kFile, 0x90000, 0x10000, 0xaaa, 0x10000);  // its second half
  syscall(3 * kMs, 5 * kMs, 0x90000, 0x10000);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].voffset, 0x10000u);
}

TEST_F(Join, QcowMetadataIsTheVdisksNeverGuestData) {
  layer(1 * kMs, kQcow, 0x10000, 4096, 0xaaa);   // makes the vdisk known
  layer(2 * kMs, kFile, 0x30000, 65536, 0xbbb);  // an L2 table write: no guest request above
  syscall(3 * kMs, 5 * kMs, 0x30000, 65536);
  bio(4 * kMs, 2000, 65536);
  syscall(6 * kMs, 7 * kMs, 0, 0, false);  // fdatasync
  bio(6 * kMs + 1, 3000, 4096);
  join->drain();
  corr.drain();
  EXPECT_TRUE(records.empty());
  EXPECT_EQ(join->stats().metadata_bytes.at(a), 65536u + 4096u);
  EXPECT_EQ(corr.map().mapped_bytes(a), 0u);
  for (const auto& e : events) EXPECT_EQ(e.tgid, 0u) << "kept away from every join";
}

TEST_F(Join, ABioInNoWindowIsUnattributedAfterTheHold) {
  bio(10 * kMs, 4000, 4096);
  EXPECT_TRUE(events.empty()) << "held for a window";
  join->advance(200 * kMs);
  EXPECT_TRUE(events.empty());
  join->advance(400 * kMs);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].tgid, 0u);
  EXPECT_EQ(join->stats().unattributed_bytes, 4096u);
}

TEST_F(Join, AReusedQiovOfAnotherDeviceIsANewTopRequest) {
  layer(1 * kMs, kQcow, 0x10000, 4096, 0xaaa);
  layer(2 * kMs, kOtherQcow, 0x70000, 4096, 0xaaa);  // freed and reused by disk b
  // Only after a's request completed can b reuse its qiov: the latest request owns it.
  layer(3 * kMs, kFile, 0x50000, 4096, 0xaaa);
  EXPECT_EQ(join->stats().top_requests, 2u);
  syscall(4 * kMs, 5 * kMs, 0x50000, 4096);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].vdisk_id, 1u);  // the latest request on that qiov owns it
  EXPECT_EQ(records[0].voffset, 0x70000u);
}

TEST_F(Join, SubmitWindowsJoinQueuedRequestsInOrder) {
  // aio=io_uring: the main thread queues two file requests, then one io_uring_enter submits both.
  layer(1 * kMs, kQcow, 0x10000, 4096, 0xaaa);
  layer(1 * kMs + 1, kFile, 0x50000, 4096, 0xaaa);
  layer(2 * kMs, kQcow, 0x20000, 8192, 0xbbb);
  layer(2 * kMs + 1, kFile, 0x60000, 8192, 0xbbb);
  FileIo submit{3 * kMs, 5 * kMs, kPid, kPid, 9, 0, 2, false, false, true};
  bio(4 * kMs, 100, 4096, kPid);
  bio(4 * kMs + 2, 300, 4096, kPid);  // the second request, in two bios
  bio(4 * kMs + 1, 200, 4096, kPid);
  join->on_file_io(submit);
  join->advance(400 * kMs);
  corr.drain();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_NE(records[0].slot, records[1].slot);
  EXPECT_EQ(corr.map().find(a, VirtualOffset{0x10000})->sector.value(), 100u);
  EXPECT_EQ(corr.map().find(a, VirtualOffset{0x20000})->sector.value(), 200u);
  EXPECT_EQ(corr.map().find(a, VirtualOffset{0x21000})->sector.value(), 300u);
  EXPECT_EQ(join->stats().submit_mismatches, 0u);
}

TEST_F(Join, ASubmitWindowWhoseBiosDoNotAddUpIsNotGuessed) {
  layer(1 * kMs, kQcow, 0x10000, 4096, 0xaaa);
  layer(1 * kMs + 1, kFile, 0x50000, 4096, 0xaaa);
  layer(2 * kMs, kQcow, 0x20000, 4096, 0xbbb);
  layer(2 * kMs + 1, kFile, 0x60000, 4096, 0xbbb);
  // Two submitted, one bio: the other was punted to a worker thread.
  join->on_file_io({3 * kMs, 5 * kMs, kPid, kPid, 9, 0, 2, false, false, true});
  bio(4 * kMs, 100, 4096, kPid);
  join->drain();
  corr.drain();
  EXPECT_TRUE(records.empty());
  EXPECT_EQ(join->stats().submit_mismatches, 1u);
  EXPECT_EQ(corr.map().mapped_bytes(a), 0u);
}

TEST_F(Join, AThreadPoolSyscallTakesItsRequestOutOfTheSubmitQueue) {
  layer(1 * kMs, kQcow, 0x10000, 4096, 0xaaa);
  layer(1 * kMs + 1, kFile, 0x50000, 4096, 0xaaa);  // done by a worker's pwrite
  layer(2 * kMs, kQcow, 0x20000, 4096, 0xbbb);
  layer(2 * kMs + 1, kFile, 0x60000, 4096, 0xbbb);  // submitted by io_submit
  syscall(3 * kMs, 4 * kMs, 0x50000, 4096);
  bio(3 * kMs + 1, 100, 4096);
  join->on_file_io({5 * kMs, 7 * kMs, kPid, kPid, 9, 0, 1, false, false, true});
  bio(6 * kMs, 200, 4096, kPid);
  join->drain();
  corr.drain();
  EXPECT_EQ(corr.map().find(a, VirtualOffset{0x10000})->sector.value(), 100u);
  EXPECT_EQ(corr.map().find(a, VirtualOffset{0x20000})->sector.value(), 200u);
}

TEST_F(Join, OtherProcessesPassThroughUntouched) {
  PhysEvent e;
  e.tgid = 999;
  e.tid = 999;
  e.bytes = 4096;
  join->on_event(e);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].tgid, 999u);
}

}  // namespace
}  // namespace v2p::correlator
