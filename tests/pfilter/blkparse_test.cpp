#include "pfilter/blkparse.hpp"

#include <gtest/gtest.h>

#include <sstream>

namespace v2p::pfilter {
namespace {

// Lines as `blkparse -i trace` prints them by default, including noise it interleaves.
constexpr const char* kTrace = R"(  7,0    1        1     0.000000000  4242  Q  WS 2048 + 8 [fio]
  7,0    1        2     0.000001500  4242  G  WS 2048 + 8 [fio]
  7,0    1        3     0.000002000  4242  I  WS 2048 + 8 [fio]
  8,0    0        4     0.000010000  4242  A   R 10240 + 16 <- (8,1) 8192
  8,1    0        5     0.000011000  4243  Q   R 8192 + 16 [qemu-system-x86]
  7,0    1        6     0.000250000     0  C  WS 2048 + 8 [0]
  7,0    1        7     0.000300000  4242  Q FWS [kworker/1:1H]
  8,1    0        8     1.000000000    17  C   R 8192 + 16 [-5]
CPU1 (7,0):
 Reads Queued:           0,        0KiB	 Writes Queued:           1,        4KiB
)";

TEST(Blkparse, ImportsQueueRemapAndCompletion) {
  std::istringstream in(kTrace);
  const auto r = import_blkparse(in);
  EXPECT_EQ(r.lines, 10U);
  ASSERT_EQ(r.events.size(), 6U);
  EXPECT_EQ(r.ignored, 4U);

  const PhysEvent& q = r.events[0];
  EXPECT_EQ(q.kind, static_cast<std::uint8_t>(PhysEventKind::kQueue));
  EXPECT_EQ(q.device(), DeviceId::from_major_minor(7, 0));
  EXPECT_EQ(q.sector, 2048U);
  EXPECT_EQ(q.bytes, 4096U);
  EXPECT_EQ(q.tgid, 4242U);
  EXPECT_EQ(q.op, static_cast<std::uint8_t>(IoOp::kWrite));
  EXPECT_STREQ(q.comm, "fio");
  EXPECT_EQ(q.ts_ns, 0U);

  const PhysEvent& a = r.events[1];
  EXPECT_EQ(a.kind, static_cast<std::uint8_t>(PhysEventKind::kRemap));
  EXPECT_EQ(a.device(), DeviceId::from_major_minor(8, 0));
  EXPECT_EQ(a.sector, 10240U);
  EXPECT_EQ(a.old_dev, DeviceId::from_major_minor(8, 1).kernel());
  EXPECT_EQ(a.old_sector, 8192U);
  EXPECT_EQ(a.bytes, 16U * 512);

  EXPECT_STREQ(r.events[2].comm, "qemu-system-x86");  // a comm with a dash survives

  const PhysEvent& c = r.events[3];
  EXPECT_EQ(c.kind, static_cast<std::uint8_t>(PhysEventKind::kComplete));
  EXPECT_EQ(c.latency_ns, 250000U);
  EXPECT_EQ(c.error, 0);
  EXPECT_EQ(c.tgid, 0U);  // the completing context is not the submitter

  const PhysEvent& flush = r.events[4];
  EXPECT_EQ(flush.bytes, 0U);
  EXPECT_EQ(flush.op, static_cast<std::uint8_t>(IoOp::kFlush));
  EXPECT_EQ(flush.ts_ns, 300000U);

  const PhysEvent& failed = r.events[5];
  EXPECT_EQ(failed.error, -5);
  EXPECT_EQ(failed.latency_ns, 1000000000U - 11000U);
  EXPECT_EQ(failed.op, static_cast<std::uint8_t>(IoOp::kRead));
}

TEST(Blkparse, IgnoresGarbage) {
  std::istringstream in("not a trace\n7,0 x y z\n\n  7,0 1 1 0.5 1 Q W notanumber + 8 [x]\n");
  const auto r = import_blkparse(in);
  EXPECT_TRUE(r.events.empty());
  EXPECT_EQ(r.ignored, 4U);
}

TEST(Blkparse, RwbsRoundTrips) {
  const ReqFlagBits bits;
  for (const char* s : {"R", "W", "WS", "FWFS", "RA", "WM", "D", "WFS"}) {
    EXPECT_EQ(rwbs(cmd_flags_from_rwbs(s, bits), 4096, bits), s) << s;
  }
}

}  // namespace
}  // namespace v2p::pfilter
