#include "vfilter/request.hpp"

#include <gtest/gtest.h>

#include "vfilter/nbd_wire.hpp"

namespace v2p::vfilter {
namespace {

using namespace nbd;

std::vector<std::byte> header(std::uint16_t flags, std::uint16_t type, std::uint64_t cookie,
                              std::uint64_t offset, std::uint32_t length) {
  std::vector<std::byte> b;
  put_be32(b, kRequestMagic);
  put_be16(b, flags);
  put_be16(b, type);
  put_be64(b, cookie);
  put_be64(b, offset);
  put_be32(b, length);
  return b;
}

constexpr ExportLimits kRw{1 << 20, false, 1};
constexpr ExportLimits kRo{1 << 20, true, 1};

Validated check(std::uint16_t type, std::uint16_t flags, std::uint64_t off, std::uint32_t len,
                const ExportLimits& l = kRw) {
  return validate_request({flags, type, 7, off, len}, l);
}

TEST(Request, ParsesAllFields) {
  const auto r = parse_request(header(kCmdFlagFua, kCmdWrite, 0x1122334455667788ULL, 4096, 512));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->flags, kCmdFlagFua);
  EXPECT_EQ(r->type, kCmdWrite);
  EXPECT_EQ(r->cookie, 0x1122334455667788ULL);
  EXPECT_EQ(r->offset, 4096u);
  EXPECT_EQ(r->length, 512u);
}

TEST(Request, RejectsShortOrBadMagic) {
  auto b = header(0, kCmdRead, 1, 0, 512);
  EXPECT_FALSE(parse_request(std::span(b).first(27)));
  b[3] = std::byte{0};
  EXPECT_FALSE(parse_request(b));
}

TEST(Request, ValidRequests) {
  EXPECT_EQ(check(kCmdRead, 0, 0, 4096).action, Action::kRead);
  const auto w = check(kCmdWrite, kCmdFlagFua, 4096, 4096);
  EXPECT_EQ(w.action, Action::kWrite);
  EXPECT_EQ(w.payload, 4096u);
  EXPECT_EQ(check(kCmdFlush, 0, 0, 0).action, Action::kFlush);
  EXPECT_EQ(check(kCmdTrim, 0, 0, 1 << 20).action, Action::kTrim);
  EXPECT_EQ(check(kCmdWriteZeroes, kCmdFlagNoHole | kCmdFlagFua, 0, 8192).action,
            Action::kWriteZeroes);
  EXPECT_EQ(check(kCmdDisc, 0, 0, 0).action, Action::kDisconnect);
  EXPECT_EQ(check(kCmdRead, 0, (1 << 20) - 1, 1).action, Action::kRead);  // last byte
}

TEST(Request, UnknownCommandAndFlags) {
  const auto u = check(99, 0, 0, 512);
  EXPECT_EQ(u.action, Action::kReplyError);
  EXPECT_EQ(u.error, kEinval);
  EXPECT_EQ(u.payload, 0u);
  EXPECT_EQ(check(kCmdRead, kCmdFlagFua, 0, 512).error, kEinval);
  EXPECT_EQ(check(kCmdTrim, kCmdFlagNoHole, 0, 512).error, kEinval);
  EXPECT_EQ(check(kCmdWriteZeroes, 1 << 4, 0, 512).error, kEinval);  // FAST_ZERO not offered
  const auto wf = check(kCmdWrite, 1 << 7, 0, 512);
  EXPECT_EQ(wf.error, kEinval);
  EXPECT_EQ(wf.payload, 512u);  // the payload must still be consumed
}

TEST(Request, PastTheEnd) {
  EXPECT_EQ(check(kCmdRead, 0, 1 << 20, 512).error, kEinval);
  EXPECT_EQ(check(kCmdTrim, 0, (1 << 20) - 512, 1024).error, kEinval);
  const auto w = check(kCmdWrite, 0, (1 << 20) - 512, 1024);
  EXPECT_EQ(w.error, kEnospc);
  EXPECT_EQ(w.payload, 1024u);
  EXPECT_EQ(check(kCmdWriteZeroes, 0, 1 << 20, 512).error, kEnospc);
}

TEST(Request, OffsetPlusLengthOverflow) {
  EXPECT_EQ(check(kCmdRead, 0, ~0ULL - 100, 512).error, kEinval);
  EXPECT_EQ(check(kCmdWrite, 0, ~0ULL - 100, 512).error, kEinval);
  EXPECT_EQ(check(kCmdTrim, 0, ~0ULL, 1).error, kEinval);
}

TEST(Request, OverMaximumPayload) {
  const ExportLimits big{1ULL << 40, false, 1};
  EXPECT_EQ(check(kCmdRead, 0, 0, kMaxPayload + 1, big).error, kEinval);
  const auto w = check(kCmdWrite, 0, 0, kMaxPayload + 1, big);
  EXPECT_EQ(w.error, kEinval);
  EXPECT_EQ(w.payload, kMaxPayload + 1);
  // No payload: a large effect length is fine.
  EXPECT_EQ(check(kCmdTrim, 0, 0, 0xffffffffU, big).action, Action::kTrim);
  EXPECT_EQ(check(kCmdWriteZeroes, 0, 0, 0xffffffffU, big).action, Action::kWriteZeroes);
}

TEST(Request, ReadOnlyExport) {
  EXPECT_EQ(check(kCmdRead, 0, 0, 512, kRo).action, Action::kRead);
  EXPECT_EQ(check(kCmdFlush, 0, 0, 0, kRo).action, Action::kFlush);
  const auto w = check(kCmdWrite, 0, 0, 512, kRo);
  EXPECT_EQ(w.error, kEperm);
  EXPECT_EQ(w.payload, 512u);
  EXPECT_EQ(check(kCmdTrim, 0, 0, 512, kRo).error, kEperm);
  EXPECT_EQ(check(kCmdWriteZeroes, 0, 0, 512, kRo).error, kEperm);
}

TEST(Request, AlignmentOnlyWhenAgreed) {
  const ExportLimits agreed{1 << 20, false, 512};
  EXPECT_EQ(check(kCmdRead, 0, 1, 512, agreed).error, kEinval);
  EXPECT_EQ(check(kCmdWrite, 0, 0, 100, agreed).error, kEinval);
  EXPECT_EQ(check(kCmdRead, 0, 512, 1024, agreed).action, Action::kRead);
  EXPECT_EQ(check(kCmdRead, 0, 1, 100).action, Action::kRead);
}

TEST(Request, SimpleReplyEncoding) {
  const auto r = encode_simple_reply(0xabcdef, kEio);
  ASSERT_EQ(r.size(), kSimpleReplySize);
  EXPECT_EQ(get_be32(r.data()), kSimpleReplyMagic);
  EXPECT_EQ(get_be32(r.data() + 4), kEio);
  EXPECT_EQ(get_be64(r.data() + 8), 0xabcdefu);
}

TEST(Request, ErrnoMapping) {
  EXPECT_EQ(errno_to_nbd(ENOSPC), kEnospc);
  EXPECT_EQ(errno_to_nbd(EDQUOT), kEnospc);
  EXPECT_EQ(errno_to_nbd(EROFS), kEperm);
  EXPECT_EQ(errno_to_nbd(EIO), kEio);
  EXPECT_EQ(errno_to_nbd(EBADF), kEio);
}

}  // namespace
}  // namespace v2p::vfilter
