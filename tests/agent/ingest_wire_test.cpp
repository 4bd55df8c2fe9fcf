#include "common/ingest_wire.hpp"

#include <gtest/gtest.h>

#include <cstring>

#include "common/error.hpp"

namespace v2p::ingest {
namespace {

struct Collect final : MessageVisitor {
  std::vector<std::string> seen;
  void on_hello(const Hello& h) override { seen.push_back("hello " + std::to_string(h.pid)); }
  void on_declaration(const VdiskDeclaration& d) override { seen.push_back("decl " + d.vm_name); }
  void on_backend(const BackendProcess& b) override {
    seen.push_back("backend " + std::to_string(b.tgid));
  }
  void on_record(const ContextRecord& r) override {
    seen.push_back("record " + std::to_string(r.voffset));
  }
  void on_image(const std::string& p) override { seen.push_back("image " + p); }
  void on_lost(const LostRecords& l) override {
    seen.push_back("lost " + std::to_string(l.lost_total));
  }
  void on_export_latency(const ExportLatency& l) override {
    seen.push_back("latency " + std::to_string(l.op) + " " + std::to_string(l.requests) + " " +
                   std::to_string(l.buckets[31]));
  }
};

TEST(IngestWire, RoundTripsEveryFrameInOrder) {
  MessageBuilder m;
  ASSERT_TRUE(m.append(Hello{kProtocolVersion, 42}));
  ASSERT_TRUE(m.append(VdiskDeclaration{1, 1, "vm1", "d0", "/img"}));
  ASSERT_TRUE(m.append(BackendProcess{1, 1, 77, 0}));
  ContextRecord r;
  r.voffset = 8192;
  ASSERT_TRUE(m.append(r));
  ASSERT_TRUE(m.append(LostRecords{5}));
  ASSERT_TRUE(m.append_image("/img"));
  ExportLatency l;
  l.op = 1;
  l.requests = 9;
  l.buckets[31] = 3;
  ASSERT_TRUE(m.append(l));
  Collect c;
  parse_message(m.bytes(), c);
  EXPECT_EQ(c.seen, (std::vector<std::string>{"hello 42", "decl vm1", "backend 77", "record 8192",
                                              "lost 5", "image /img", "latency 1 9 3"}));
}

TEST(IngestWire, AMessageNeverGrowsPastTheLimit) {
  MessageBuilder m;
  std::size_t n = 0;
  while (m.append(ContextRecord{})) ++n;
  EXPECT_EQ(n, kMaxMessageBytes / (8 + sizeof(ContextRecord)));
  EXPECT_LE(m.bytes().size(), kMaxMessageBytes);
}

TEST(IngestWire, RefusesTruncatedWrongSizedAndUnknownFrames) {
  MessageBuilder m;
  ASSERT_TRUE(m.append(ContextRecord{}));
  Collect c;
  const auto bytes = m.bytes();
  EXPECT_THROW(parse_message(bytes.first(bytes.size() - 1), c), Error);
  EXPECT_THROW(parse_message(bytes.first(5), c), Error);
  std::vector<std::byte> wrong(bytes.begin(), bytes.end());
  std::uint32_t len = 63;
  std::memcpy(wrong.data() + 4, &len, 4);
  wrong.pop_back();
  EXPECT_THROW(parse_message(wrong, c), Error);
  MessageBuilder bad_op;
  ExportLatency l;
  l.op = 3;  // read, write, other only
  ASSERT_TRUE(bad_op.append(l));
  EXPECT_THROW(parse_message(bad_op.bytes(), c), Error);
  MessageBuilder u;
  ASSERT_TRUE(u.append(999, {}));
  EXPECT_THROW(parse_message(u.bytes(), c), Error);
  std::vector<std::byte> huge(8);
  std::uint32_t big = 0xffffffff;
  std::memcpy(huge.data() + 4, &big, 4);
  EXPECT_THROW(parse_message(huge, c), Error);
}

}  // namespace
}  // namespace v2p::ingest
