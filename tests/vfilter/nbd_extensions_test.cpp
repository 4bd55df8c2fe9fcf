// Structured replies, meta contexts, BLOCK_STATUS, CACHE and STARTTLS at the byte level: the
// handshake's answers, request validation, reply framing and the SEEK_HOLE extent walk.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "vfilter/handshake.hpp"
#include "vfilter/nbd_block_status.hpp"
#include "vfilter/nbd_meta_context.hpp"
#include "vfilter/nbd_structured_reply.hpp"
#include "vfilter/nbd_wire.hpp"
#include "vfilter/request.hpp"

namespace v2p::vfilter {
namespace {

using namespace nbd;
using Bytes = std::vector<std::byte>;

std::vector<ExportInfo> exports() {
  return {{"disk0", "first", 1 << 20, false, 512}, {"other", "", 4096, false, 1}};
}

Bytes option(std::uint32_t opt, const Bytes& data) {
  Bytes b;
  put_be64(b, kOptMagic);
  put_be32(b, opt);
  put_be32(b, static_cast<std::uint32_t>(data.size()));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

Bytes start() {
  Bytes b;
  put_be32(b, kClientFixedNewstyle | kClientNoZeroes);
  return b;
}

Bytes go(const std::string& name) {
  Bytes d;
  put_be32(d, static_cast<std::uint32_t>(name.size()));
  put_bytes(d, name);
  put_be16(d, 0);
  return option(kOptGo, d);
}

Bytes meta(std::uint32_t opt, const std::string& name, std::vector<std::string> queries) {
  Bytes d;
  put_be32(d, static_cast<std::uint32_t>(name.size()));
  put_bytes(d, name);
  put_be32(d, static_cast<std::uint32_t>(queries.size()));
  for (const auto& q : queries) {
    put_be32(d, static_cast<std::uint32_t>(q.size()));
    put_bytes(d, q);
  }
  return option(opt, d);
}

struct OptReply {
  std::uint32_t option;
  std::uint32_t type;
  Bytes data;
};

std::vector<OptReply> replies(const Bytes& out) {
  std::vector<OptReply> r;
  std::size_t pos = 0;
  while (pos + 20 <= out.size()) {
    const std::uint32_t len = get_be32(out.data() + pos + 16);
    r.push_back({get_be32(out.data() + pos + 8), get_be32(out.data() + pos + 12),
                 Bytes(out.begin() + static_cast<std::ptrdiff_t>(pos + 20),
                       out.begin() + static_cast<std::ptrdiff_t>(pos + 20 + len))});
    pos += 20 + len;
  }
  EXPECT_EQ(pos, out.size());
  return r;
}

Bytes feed(Handshake& hs, std::initializer_list<Bytes> parts) {
  for (const auto& p : parts) hs.feed(p);
  return hs.take_output();
}

std::string context_name(const OptReply& r) {
  return {reinterpret_cast<const char*>(r.data.data()) + 4, r.data.size() - 4};
}

TEST(NbdExtensions, StructuredRepliesAddDfAndCacheToTheFlags) {
  Handshake hs(exports());
  hs.take_output();
  const auto r = replies(feed(hs, {start(), option(kOptStructuredReply, {}), go("disk0")}));
  ASSERT_GE(r.size(), 2u);
  EXPECT_EQ(r[0].type, kRepAck);
  EXPECT_EQ(r[1].type, kRepInfo);
  const auto flags = get_be16(r[1].data.data() + 10);
  EXPECT_TRUE(flags & kTxSendDf);
  EXPECT_TRUE(flags & kTxSendCache);
  EXPECT_TRUE(hs.done());
  EXPECT_EQ(hs.reply_style(), ReplyStyle::kStructured);
  EXPECT_FALSE(hs.base_allocation());
}

TEST(NbdExtensions, ListMetaContextOffersBaseAllocation) {
  for (const auto& queries :
       std::vector<std::vector<std::string>>{{}, {"base:"}, {"base:allocation"}}) {
    Handshake hs(exports());
    hs.take_output();
    const auto r = replies(feed(
        hs, {start(), option(kOptStructuredReply, {}), meta(kOptListMetaContext, "", queries)}));
    ASSERT_EQ(r.size(), 3u);
    EXPECT_EQ(r[1].type, kRepMetaContext);
    EXPECT_EQ(context_name(r[1]), "base:allocation");
    EXPECT_EQ(get_be32(r[1].data.data()), 0u);  // listing hands out no id
    EXPECT_EQ(r[2].type, kRepAck);
  }
  // Unknown namespaces and leaves are ignored, not errors.
  Handshake hs(exports());
  hs.take_output();
  const auto r =
      replies(feed(hs, {start(), option(kOptStructuredReply, {}),
                        meta(kOptListMetaContext, "", {"qemu:dirty-bitmap:x", "base:nope"})}));
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].type, kRepAck);
}

TEST(NbdExtensions, SetMetaContextCountsOnlyForTheSameExport) {
  Handshake hs(exports());
  hs.take_output();
  const auto r =
      replies(feed(hs, {start(), option(kOptStructuredReply, {}),
                        meta(kOptSetMetaContext, "disk0", {"base:allocation"}), go("disk0")}));
  ASSERT_GE(r.size(), 3u);
  EXPECT_EQ(r[1].type, kRepMetaContext);
  EXPECT_EQ(get_be32(r[1].data.data()), kBaseAllocationId);
  EXPECT_EQ(context_name(r[1]), "base:allocation");
  EXPECT_TRUE(hs.base_allocation());

  Handshake other(exports());
  other.take_output();
  feed(other, {start(), option(kOptStructuredReply, {}),
               meta(kOptSetMetaContext, "disk0", {"base:allocation"}), go("other")});
  EXPECT_TRUE(other.done());
  EXPECT_FALSE(other.base_allocation());

  // A later SET without the context drops it; "base:" does not select in SET.
  Handshake reset(exports());
  reset.take_output();
  feed(reset, {start(), option(kOptStructuredReply, {}),
               meta(kOptSetMetaContext, "disk0", {"base:allocation"}),
               meta(kOptSetMetaContext, "disk0", {"base:"}), go("disk0")});
  EXPECT_FALSE(reset.base_allocation());
}

TEST(NbdExtensions, MalformedMetaContextDataIsInvalid) {
  Bytes d;
  put_be32(d, 0);
  put_be32(d, 1);
  put_be32(d, 100);  // query longer than the option
  put_bytes(d, "base:");
  EXPECT_FALSE(parse_meta_context_request(d));
  Bytes huge;
  put_be32(huge, 0);
  put_be32(huge, 0xffffffffU);  // a count no data could hold
  EXPECT_FALSE(parse_meta_context_request(huge));
  Bytes trailing;
  put_be32(trailing, 0);
  put_be32(trailing, 0);
  trailing.push_back(std::byte{1});
  EXPECT_FALSE(parse_meta_context_request(trailing));
  Handshake hs(exports());
  hs.take_output();
  const auto r =
      replies(feed(hs, {start(), option(kOptStructuredReply, {}), option(kOptSetMetaContext, d)}));
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].type, kRepErrInvalid);
}

TEST(NbdExtensions, RequiredTlsRefusesEverythingButStartTls) {
  Handshake hs(exports(), TlsMode::kRequired);
  hs.take_output();
  auto r = replies(
      feed(hs, {start(), option(kOptList, {}), go("disk0"), option(kOptStructuredReply, {})}));
  ASSERT_EQ(r.size(), 3u);
  for (const auto& x : r) EXPECT_EQ(x.type, kRepErrTlsReqd);
  EXPECT_FALSE(hs.done());
  r = replies(feed(hs, {option(kOptStartTls, {})}));
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].type, kRepAck);
  EXPECT_TRUE(hs.wants_tls());
  hs.tls_started();
  r = replies(feed(hs, {option(kOptStartTls, {}), go("disk0")}));
  ASSERT_GE(r.size(), 2u);
  EXPECT_EQ(r[0].type, kRepErrInvalid);  // TLS is already up
  EXPECT_TRUE(hs.done());

  Handshake plain(exports(), TlsMode::kRequired);
  plain.take_output();
  Bytes name;
  put_bytes(name, "disk0");
  feed(plain, {start(), option(kOptExportName, name)});
  EXPECT_TRUE(plain.closed());  // EXPORT_NAME cannot be refused, only closed
}

TEST(NbdExtensions, StartTlsResetsWhatWasAgreedBefore) {
  Handshake hs(exports(), TlsMode::kRequired);
  hs.take_output();
  feed(hs, {start(), option(kOptStartTls, {})});
  ASSERT_TRUE(hs.wants_tls());
  hs.tls_started();
  feed(hs, {option(kOptStructuredReply, {})});
  EXPECT_EQ(hs.reply_style(), ReplyStyle::kStructured);
  // Bytes that arrived behind STARTTLS would be TLS records: the handshake refuses them.
  Handshake early(exports(), TlsMode::kRequired);
  early.take_output();
  feed(early, {start(), option(kOptStartTls, {}), Bytes(5)});
  early.tls_started();
  EXPECT_TRUE(early.closed());
}

TEST(NbdExtensions, BlockStatusAndCacheValidation) {
  RequestHeader r{0, kCmdBlockStatus, 1, 0, 4096};
  const ExportLimits plain{1 << 20, false, 1, true, false};
  const ExportLimits meta{1 << 20, true, 1, true, true};
  EXPECT_EQ(validate_request(r, plain).error, kEinval);               // no context selected
  EXPECT_EQ(validate_request(r, meta).action, Action::kBlockStatus);  // read-only is fine
  r.flags = kCmdFlagReqOne;
  EXPECT_EQ(validate_request(r, meta).action, Action::kBlockStatus);
  r.offset = (1 << 20) - 512;
  EXPECT_EQ(validate_request(r, meta).error, kEinval);  // past the end
  r.offset = 0;
  r.length = 0;
  EXPECT_EQ(validate_request(r, meta).error, kEinval);
  const RequestHeader cache{0, kCmdCache, 2, 4096, 8192};
  EXPECT_EQ(validate_request(cache, meta).action, Action::kCache);
  const RequestHeader df{kCmdFlagDf, kCmdRead, 3, 0, 512};
  EXPECT_EQ(validate_request(df, meta).action, Action::kRead);
  const ExportLimits simple{1 << 20, false, 1, false, false};
  EXPECT_EQ(validate_request(df, simple).error, kEinval);
}

TEST(NbdExtensions, ReplyFraming) {
  const ReplyTo to{0x1122334455667788ULL, 4096};
  const ReplyFrame simple_frame = status_reply(ReplyStyle::kSimple, to, 5);
  const auto simple = simple_frame.bytes();
  ASSERT_EQ(simple.size(), 16u);
  EXPECT_EQ(get_be32(simple.data()), kSimpleReplyMagic);
  EXPECT_EQ(get_be32(simple.data() + 4), 5u);
  const ReplyFrame data_frame = read_reply(ReplyStyle::kStructured, to, 512);
  const auto data = data_frame.bytes();
  ASSERT_EQ(data.size(), 28u);
  EXPECT_EQ(get_be32(data.data()), kStructuredReplyMagic);
  EXPECT_EQ(get_be16(data.data() + 4), kReplyFlagDone);
  EXPECT_EQ(get_be16(data.data() + 6), kReplyTypeOffsetData);
  EXPECT_EQ(get_be64(data.data() + 8), to.cookie);
  EXPECT_EQ(get_be32(data.data() + 16), 520u);
  EXPECT_EQ(get_be64(data.data() + 20), 4096u);
  const ReplyFrame err_frame = error_chunk(ReplyStyle::kStructured, to, kEio);
  const auto err = err_frame.bytes();
  ASSERT_EQ(err.size(), 26u);
  EXPECT_EQ(get_be16(err.data() + 6), kReplyTypeError);
  EXPECT_EQ(get_be32(err.data() + 20), kEio);
  const ReplyFrame hole_frame = hole_reply(ReplyStyle::kStructured, to, 4096);
  const auto hole = hole_frame.bytes();
  ASSERT_EQ(hole.size(), 32u);
  EXPECT_EQ(get_be16(hole.data() + 6), kReplyTypeOffsetHole);
  EXPECT_EQ(get_be32(hole.data() + 28), 4096u);
  // Extended headers: 32-byte header echoing the offset; no simple replies at all.
  const ReplyFrame none_frame = status_reply(ReplyStyle::kExtended, to, 0);
  const auto none = none_frame.bytes();
  ASSERT_EQ(none.size(), 32u);
  EXPECT_EQ(get_be32(none.data()), kExtendedReplyMagic);
  EXPECT_EQ(get_be16(none.data() + 6), kReplyTypeNone);
  EXPECT_EQ(get_be64(none.data() + 16), 4096u);
  EXPECT_EQ(get_be64(none.data() + 24), 0u);
}

TEST(NbdExtensions, BlockStatusChunksSplitLongExtentsInTheCompactForm) {
  const Extent e[] = {{6ULL << 30, kStateHole | kStateZero}, {4096, 0}};
  const auto c = block_status_reply(ReplyStyle::kStructured, {7, 0}, kBaseAllocationId, e);
  ASSERT_EQ(c.size(), 20u + 4 + 3 * 8);  // 6 GiB becomes two descriptors
  EXPECT_EQ(get_be16(c.data() + 6), kReplyTypeBlockStatus);
  EXPECT_EQ(get_be32(c.data() + 16), 4u + 3 * 8);
  EXPECT_EQ(get_be32(c.data() + 20), kBaseAllocationId);
  const std::uint64_t first = get_be32(c.data() + 24);
  const std::uint64_t second = get_be32(c.data() + 32);
  EXPECT_EQ(first + second, 6ULL << 30);
  EXPECT_EQ(first % 4096, 0u);
  EXPECT_EQ(get_be32(c.data() + 44), 0u);
  const auto x = block_status_reply(ReplyStyle::kExtended, {7, 0}, kBaseAllocationId, e);
  ASSERT_EQ(x.size(), 32u + 8 + 2 * 16);
  EXPECT_EQ(get_be16(x.data() + 6), kReplyTypeBlockStatusExt);
  EXPECT_EQ(get_be32(x.data() + 36), 2u);
  EXPECT_EQ(get_be64(x.data() + 40), 6ULL << 30);
}

// A file with data at [1 MiB, 1 MiB + 64 KiB) in 4 MiB, in the test's temporary directory.
struct SparseFile {
  SparseFile() {
    std::string tmpl = ::testing::TempDir() + "v2p-sparse-XXXXXX";
    fd = ::mkstemp(tmpl.data());
    path = tmpl;
    EXPECT_GE(fd, 0);
    EXPECT_EQ(::ftruncate(fd, 4 << 20), 0);
    const std::string data(64 << 10, 'x');
    EXPECT_EQ(::pwrite(fd, data.data(), data.size(), 1 << 20), static_cast<ssize_t>(data.size()));
    EXPECT_EQ(::fsync(fd), 0);
  }
  ~SparseFile() {
    ::close(fd);
    ::unlink(path.c_str());
  }
  int fd = -1;
  std::string path;
};

TEST(NbdExtensions, AllocationExtentsFollowSeekHole) {
  SparseFile f;
  const std::uint32_t hole = kStateHole | kStateZero;
  auto x = allocation_extents(f.fd, 0, 4 << 20, 4 << 20, 100);
  if (x.size() == 1 && x[0].flags == 0) GTEST_SKIP() << "this file system reports no holes";
  ASSERT_EQ(x.size(), 3u);
  EXPECT_EQ(x[0].length, 1u << 20);
  EXPECT_EQ(x[0].flags, hole);
  EXPECT_EQ(x[1].length, 64u << 10);
  EXPECT_EQ(x[1].flags, 0u);
  EXPECT_EQ(x[2].length, (3u << 20) - (64u << 10));
  EXPECT_EQ(x[2].flags, hole);
  // Clamped to the request and to the size; at most max_extents.
  x = allocation_extents(f.fd, (1 << 20) + 4096, 8192, 4 << 20, 100);
  ASSERT_EQ(x.size(), 1u);
  EXPECT_EQ(x[0].length, 8192u);
  EXPECT_EQ(x[0].flags, 0u);
  x = allocation_extents(f.fd, 0, 4 << 20, 4 << 20, 1);
  ASSERT_EQ(x.size(), 1u);
  EXPECT_EQ(x[0].length, 1u << 20);
  x = allocation_extents(f.fd, 3 << 20, 8 << 20, 4 << 20, 100);
  ASSERT_EQ(x.size(), 1u);
  EXPECT_EQ(x[0].length, 1u << 20);
  // Without a file to ask: everything is data.
  x = allocation_extents(-1, 0, 4096, 4 << 20, 100);
  ASSERT_EQ(x.size(), 1u);
  EXPECT_EQ(x[0].flags, 0u);
}

}  // namespace
}  // namespace v2p::vfilter
