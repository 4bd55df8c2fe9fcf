#include "pfilter/events.hpp"

#include <gtest/gtest.h>

#include <cerrno>

#include "v2p/tag.hpp"

namespace v2p::pfilter {
namespace {

TEST(Events, DecodesOps) {
  const ReqFlagBits b;
  EXPECT_EQ(io_op_from_cmd_flags(kReqOpRead, 4096, b), IoOp::kRead);
  EXPECT_EQ(io_op_from_cmd_flags(kReqOpWrite | 1U << b.fua, 4096, b), IoOp::kWrite);
  EXPECT_EQ(io_op_from_cmd_flags(kReqOpWrite | 1U << b.preflush, 0, b), IoOp::kFlush);
  EXPECT_EQ(io_op_from_cmd_flags(kReqOpWrite | 1U << b.preflush, 4096, b), IoOp::kWrite);
  EXPECT_EQ(io_op_from_cmd_flags(kReqOpFlush, 0, b), IoOp::kFlush);
  EXPECT_EQ(io_op_from_cmd_flags(kReqOpDiscard, 1 << 20, b), IoOp::kDiscard);
  EXPECT_EQ(io_op_from_cmd_flags(kReqOpWriteZeroes, 1 << 20, b), IoOp::kWriteZeroes);
  EXPECT_EQ(io_op_from_cmd_flags(34, 0, b), IoOp::kOther);
}

TEST(Events, KernelFlagLayoutIsReadable) {
  // With BTF the bits come from the kernel, else the defaults: either way distinct and in range.
  const auto b = ReqFlagBits::from_kernel();
  EXPECT_GE(b.sync, 8U);
  EXPECT_LT(b.preflush, 32U);
  EXPECT_NE(b.fua, b.preflush);
}

TEST(Events, ConvertsBlkStatus) {
  EXPECT_EQ(errno_from_blk_status(0), 0);
  EXPECT_EQ(errno_from_blk_status(10), -EIO);
  EXPECT_EQ(errno_from_blk_status(3), -ENOSPC);
  EXPECT_EQ(errno_from_blk_status(200), -EIO);
}

TEST(Events, FormatsOneLine) {
  PhysEvent e;
  e.ts_ns = 12'000'000'123;
  e.dev = DeviceId::from_major_minor(7, 3).kernel();
  e.sector = 2048;
  e.bytes = 4096;
  e.tgid = 10;
  e.tid = 11;
  e.cmd_flags = kReqOpWrite;
  e.ioprio = tag::ioprio_for_slot(5);
  e.kind = static_cast<std::uint8_t>(PhysEventKind::kComplete);
  e.latency_ns = 12300;
  std::snprintf(e.comm, sizeof e.comm, "qemu");
  EXPECT_EQ(format_event(e, {}),
            "12.000000123 C 7,3 W    2048+8 4096B tgid 10/11 qemu slot 5 lat 12.3us");
}

}  // namespace
}  // namespace v2p::pfilter
