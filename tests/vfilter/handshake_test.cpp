#include "vfilter/handshake.hpp"

#include <gtest/gtest.h>

#include "vfilter/nbd_wire.hpp"

namespace v2p::vfilter {
namespace {

using namespace nbd;
using Bytes = std::vector<std::byte>;

std::vector<ExportInfo> two_exports() {
  return {{"disk0", "first", 1 << 20, false, 512}, {"ro", "", 4096, true, 1}};
}

Bytes client_flags(std::uint32_t f = kClientFixedNewstyle | kClientNoZeroes) {
  Bytes b;
  put_be32(b, f);
  return b;
}

Bytes option(std::uint32_t opt, const Bytes& data) {
  Bytes b;
  put_be64(b, kOptMagic);
  put_be32(b, opt);
  put_be32(b, static_cast<std::uint32_t>(data.size()));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

Bytes go_data(const std::string& name, std::vector<std::uint16_t> infos) {
  Bytes d;
  put_be32(d, static_cast<std::uint32_t>(name.size()));
  put_bytes(d, name);
  put_be16(d, static_cast<std::uint16_t>(infos.size()));
  for (auto i : infos) put_be16(d, i);
  return d;
}

struct OptReply {
  std::uint32_t option;
  std::uint32_t type;
  Bytes data;
};

// Splits handshake output into option replies; `skip` bytes (greeting) first.
std::vector<OptReply> replies(const Bytes& out, std::size_t skip = 0) {
  std::vector<OptReply> r;
  std::size_t pos = skip;
  while (pos + 20 <= out.size()) {
    EXPECT_EQ(get_be64(out.data() + pos), kOptReplyMagic);
    OptReply x{get_be32(out.data() + pos + 8), get_be32(out.data() + pos + 12), {}};
    const std::uint32_t len = get_be32(out.data() + pos + 16);
    EXPECT_LE(pos + 20 + len, out.size());
    x.data.assign(out.begin() + static_cast<std::ptrdiff_t>(pos + 20),
                  out.begin() + static_cast<std::ptrdiff_t>(pos + 20 + len));
    r.push_back(std::move(x));
    pos += 20 + len;
  }
  EXPECT_EQ(pos, out.size());
  return r;
}

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes b;
  for (const auto& p : parts) b.insert(b.end(), p.begin(), p.end());
  return b;
}

TEST(Handshake, GreetingIsFixedNewstyle) {
  Handshake hs(two_exports());
  const Bytes out = hs.take_output();
  ASSERT_EQ(out.size(), 18u);
  EXPECT_EQ(get_be64(out.data()), kNbdMagic);
  EXPECT_EQ(get_be64(out.data() + 8), kOptMagic);
  EXPECT_EQ(get_be16(out.data() + 16), kFlagFixedNewstyle | kFlagNoZeroes);
}

TEST(Handshake, GoSelectsExportAndAdvertisesSizes) {
  Handshake hs(two_exports());
  hs.take_output();
  hs.feed(cat({client_flags(), option(kOptGo, go_data("disk0", {kInfoBlockSize, kInfoName}))}));
  ASSERT_TRUE(hs.done());
  EXPECT_EQ(hs.selected(), 0u);
  EXPECT_TRUE(hs.block_size_agreed());
  const auto r = replies(hs.take_output());
  ASSERT_EQ(r.size(), 4u);  // EXPORT, BLOCK_SIZE, NAME, ACK
  EXPECT_EQ(r[0].type, kRepInfo);
  EXPECT_EQ(get_be16(r[0].data.data()), kInfoExport);
  EXPECT_EQ(get_be64(r[0].data.data() + 2), 1u << 20);
  const auto flags = get_be16(r[0].data.data() + 10);
  EXPECT_TRUE(flags & kTxHasFlags);
  EXPECT_TRUE(flags & kTxSendFua);
  EXPECT_TRUE(flags & kTxSendTrim);
  EXPECT_TRUE(flags & kTxSendWriteZeroes);
  EXPECT_TRUE(flags & kTxCanMultiConn);
  EXPECT_FALSE(flags & kTxReadOnly);
  EXPECT_EQ(get_be16(r[1].data.data()), kInfoBlockSize);
  EXPECT_EQ(get_be32(r[1].data.data() + 2), 512u);
  EXPECT_EQ(get_be32(r[1].data.data() + 6), 4096u);
  EXPECT_EQ(get_be32(r[1].data.data() + 10), kMaxPayload);
  EXPECT_EQ(get_be16(r[2].data.data()), kInfoName);
  EXPECT_EQ(r[3].type, kRepAck);
  EXPECT_TRUE(hs.leftover().empty());
}

TEST(Handshake, ReadOnlyExportFlags) {
  Handshake hs(two_exports());
  hs.take_output();
  hs.feed(cat({client_flags(), option(kOptGo, go_data("ro", {}))}));
  ASSERT_TRUE(hs.done());
  EXPECT_FALSE(hs.block_size_agreed());
  const auto r = replies(hs.take_output());
  const auto flags = get_be16(r[0].data.data() + 10);
  EXPECT_TRUE(flags & kTxReadOnly);
  EXPECT_FALSE(flags & kTxSendTrim);
}

// The flags come from what the export's stack offers, one capability at a time.
TEST(Handshake, FlagsFollowTheStacksCapabilities) {
  ExportInfo e{"d", "", 1 << 20, false, 1};
  const auto all = transmission_flags(e);
  EXPECT_TRUE(all & kTxSendFua && all & kTxSendTrim && all & kTxSendWriteZeroes &&
              all & kTxCanMultiConn);
  e.can_trim = false;
  EXPECT_EQ(transmission_flags(e), all & ~kTxSendTrim);
  e.can_fua = false;
  e.can_zero = false;
  e.can_multi_conn = false;
  EXPECT_EQ(transmission_flags(e), kTxHasFlags | kTxSendFlush | kTxSendCache);
}

TEST(Handshake, EmptyNameIsTheDefaultExport) {
  Handshake hs(two_exports());
  hs.feed(cat({client_flags(), option(kOptGo, go_data("", {}))}));
  ASSERT_TRUE(hs.done());
  EXPECT_EQ(hs.selected(), 0u);
}

TEST(Handshake, InfoDoesNotEndTheHandshake) {
  Handshake hs(two_exports());
  hs.take_output();
  hs.feed(cat({client_flags(), option(kOptInfo, go_data("ro", {kInfoDescription}))}));
  EXPECT_EQ(hs.state(), Handshake::State::kOptionHeader);
  const auto r = replies(hs.take_output());
  EXPECT_EQ(r.back().type, kRepAck);
  hs.feed(option(kOptGo, go_data("disk0", {})));
  EXPECT_TRUE(hs.done());
}

TEST(Handshake, UnknownExportIsAnErrorReplyNotAClose) {
  Handshake hs(two_exports());
  hs.take_output();
  hs.feed(cat({client_flags(), option(kOptGo, go_data("nope", {}))}));
  EXPECT_EQ(hs.state(), Handshake::State::kOptionHeader);
  const auto r = replies(hs.take_output());
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].type, kRepErrUnknown);
}

TEST(Handshake, ListNamesEveryExport) {
  Handshake hs(two_exports());
  hs.take_output();
  hs.feed(cat({client_flags(), option(kOptList, {})}));
  const auto r = replies(hs.take_output());
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].type, kRepServer);
  EXPECT_EQ(get_be32(r[0].data.data()), 5u);
  EXPECT_EQ(r[2].type, kRepAck);
  hs.feed(option(kOptList, Bytes(3)));
  EXPECT_EQ(replies(hs.take_output())[0].type, kRepErrInvalid);
}

TEST(Handshake, AbortAcksAndCloses) {
  Handshake hs(two_exports());
  hs.take_output();
  hs.feed(cat({client_flags(), option(kOptAbort, {})}));
  EXPECT_TRUE(hs.closed());
  EXPECT_EQ(replies(hs.take_output())[0].type, kRepAck);
}

TEST(Handshake, ExportNameWithAndWithoutZeroes) {
  for (bool no_zeroes : {true, false}) {
    Handshake hs(two_exports());
    hs.take_output();
    Bytes name;
    put_bytes(name, "disk0");
    hs.feed(cat({client_flags(kClientFixedNewstyle | (no_zeroes ? kClientNoZeroes : 0)),
                 option(kOptExportName, name)}));
    ASSERT_TRUE(hs.done());
    const Bytes out = hs.take_output();
    EXPECT_EQ(out.size(), no_zeroes ? 10u : 134u);
    EXPECT_EQ(get_be64(out.data()), 1u << 20);
  }
}

TEST(Handshake, ExportNameUnknownCloses) {
  Handshake hs(two_exports());
  Bytes name;
  put_bytes(name, "nope");
  hs.feed(cat({client_flags(), option(kOptExportName, name)}));
  EXPECT_TRUE(hs.closed());
}

TEST(Handshake, UnknownAndUnsupportedOptionsAreRefused) {
  // STARTTLS without --tls-creds and unknown options are unsupported; the structured-reply
  // options with data, or meta contexts before structured replies, are invalid.
  const std::pair<std::uint32_t, std::uint32_t> cases[] = {{kOptStartTls, kRepErrUnsup},
                                                           {0xdeadu, kRepErrUnsup},
                                                           {kOptStructuredReply, kRepErrInvalid},
                                                           {kOptListMetaContext, kRepErrInvalid},
                                                           {kOptSetMetaContext, kRepErrInvalid}};
  for (const auto& [opt, want] : cases) {
    Handshake hs(two_exports());
    hs.take_output();
    hs.feed(cat({client_flags(), option(opt, Bytes(7))}));
    const auto r = replies(hs.take_output());
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].type, want);
    EXPECT_EQ(r[0].option, opt);
    EXPECT_EQ(hs.state(), Handshake::State::kOptionHeader);
  }
}

TEST(Handshake, BadMagicOrUnknownClientFlagsClose) {
  Handshake a(two_exports());
  a.feed(client_flags(0x80));
  EXPECT_TRUE(a.closed());
  Handshake b(two_exports());
  Bytes bad = option(kOptList, {});
  bad[0] = std::byte{0};
  b.feed(cat({client_flags(), bad}));
  EXPECT_TRUE(b.closed());
}

TEST(Handshake, MalformedGoData) {
  Handshake hs(two_exports());
  hs.take_output();
  Bytes d;
  put_be32(d, 1000);  // name longer than the data
  put_be16(d, 0);
  hs.feed(cat({client_flags(), option(kOptGo, d)}));
  hs.feed(option(kOptGo, Bytes(3)));  // too short
  Bytes count = go_data("disk0", {kInfoName});
  count.pop_back();  // count does not match
  hs.feed(option(kOptGo, count));
  const auto r = replies(hs.take_output());
  ASSERT_EQ(r.size(), 3u);
  for (const auto& x : r) EXPECT_EQ(x.type, kRepErrInvalid);
  EXPECT_FALSE(hs.done());
}

TEST(Handshake, OversizedOptionIsSkippedWithoutBuffering) {
  Handshake hs(two_exports());
  hs.take_output();
  Bytes header;
  put_be64(header, kOptMagic);
  put_be32(header, kOptGo);
  put_be32(header, Handshake::kMaxOptionData + 1);
  hs.feed(cat({client_flags(), header}));
  for (std::uint32_t sent = 0; sent < Handshake::kMaxOptionData + 1; sent += 1000) {
    hs.feed(Bytes(std::min<std::uint32_t>(1000, Handshake::kMaxOptionData + 1 - sent)));
  }
  const auto r = replies(hs.take_output());
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].type, kRepErrTooBig);
  hs.feed(option(kOptGo, go_data("disk0", {})));
  EXPECT_TRUE(hs.done());
}

TEST(Handshake, ByteByByteEqualsAllAtOnce) {
  const Bytes input = cat({client_flags(), option(kOptList, {}), option(99, Bytes(5)),
                           option(kOptGo, go_data("ro", {kInfoBlockSize}))});
  Handshake whole(two_exports());
  whole.feed(input);
  Handshake bytewise(two_exports());
  Bytes out;
  for (std::byte b : input) {
    EXPECT_FALSE(bytewise.done());
    bytewise.feed(std::span<const std::byte>(&b, 1));
    const auto o = bytewise.take_output();
    out.insert(out.end(), o.begin(), o.end());
  }
  EXPECT_TRUE(bytewise.done());
  EXPECT_EQ(out, whole.take_output());
}

TEST(Handshake, TruncatedInputWaits) {
  Handshake hs(two_exports());
  hs.take_output();
  Bytes in = cat({client_flags(), option(kOptGo, go_data("disk0", {}))});
  in.pop_back();
  hs.feed(in);
  EXPECT_FALSE(hs.done());
  EXPECT_FALSE(hs.closed());
  EXPECT_TRUE(hs.take_output().empty());
}

TEST(Handshake, BytesAfterGoAreLeftForTransmission) {
  Handshake hs(two_exports());
  Bytes extra = {std::byte{1}, std::byte{2}, std::byte{3}};
  hs.feed(cat({client_flags(), option(kOptGo, go_data("disk0", {})), extra}));
  ASSERT_TRUE(hs.done());
  EXPECT_EQ(Bytes(hs.leftover().begin(), hs.leftover().end()), extra);
}

TEST(Handshake, TooManyOptionsClose) {
  Handshake hs(two_exports());
  hs.feed(client_flags());
  for (std::uint32_t i = 0; i <= Handshake::kMaxOptions && !hs.closed(); ++i) {
    hs.feed(option(99, {}));
    hs.take_output();
  }
  EXPECT_TRUE(hs.closed());
}

}  // namespace
}  // namespace v2p::vfilter
