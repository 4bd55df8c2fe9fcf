#include "common/record_file.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/error.hpp"

namespace v2p {
namespace {

class TempFile {
 public:
  TempFile() {
    path_ = std::filesystem::temp_directory_path() /
            ("v2p-record-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
  }
  ~TempFile() { std::filesystem::remove(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

TEST(RecordFile, RoundTripsEveryFrameType) {
  TempFile tmp;
  ContextRecord r;
  r.voffset = 4096;
  r.length = 8192;
  r.slot = 17;
  r.tgid = 42;
  PhysEvent e;
  e.sector = 123456;
  e.bytes = 8192;
  e.ioprio = 17 << 3;
  std::strcpy(e.comm, "qemu");
  VdiskDeclaration d{7, 9, "vm-a", "disk0", "/images/a.raw"};
  {
    StreamWriter w(tmp.path());
    w.write(d);
    w.write(r);
    w.write(e);
    w.write(LostEvents{100, 3});
    w.write(BackendProcess{7, 9, 4242, 0});
    w.flush(true);
  }
  StreamReader reader(tmp.path());
  auto f1 = reader.next();
  ASSERT_TRUE(f1);
  ASSERT_EQ(f1->type, FrameType::kVdiskDeclaration);
  const auto d2 = decode_vdisk_declaration(f1->payload);
  EXPECT_EQ(d2.vm_name, "vm-a");
  EXPECT_EQ(d2.vdisk_name, "disk0");
  EXPECT_EQ(d2.image_path, "/images/a.raw");
  EXPECT_EQ(d2.vdisk_id, 9u);
  auto f2 = reader.next();
  ASSERT_TRUE(f2);
  ASSERT_EQ(f2->type, FrameType::kContextRecord);
  const auto r2 = decode_fixed<ContextRecord>(f2->payload);
  EXPECT_EQ(r2.voffset, 4096u);
  EXPECT_EQ(r2.slot, 17);
  auto f3 = reader.next();
  ASSERT_TRUE(f3);
  const auto e2 = decode_fixed<PhysEvent>(f3->payload);
  EXPECT_EQ(e2.sector, 123456u);
  EXPECT_STREQ(e2.comm, "qemu");
  auto f4 = reader.next();
  ASSERT_TRUE(f4);
  EXPECT_EQ(decode_fixed<LostEvents>(f4->payload).lost_total, 3u);
  auto f5 = reader.next();
  ASSERT_TRUE(f5);
  ASSERT_EQ(f5->type, FrameType::kBackendProcess);
  const auto b = decode_fixed<BackendProcess>(f5->payload);
  EXPECT_EQ(b.vm_id, 7u);
  EXPECT_EQ(b.vdisk_id, 9u);
  EXPECT_EQ(b.tgid, 4242u);
  EXPECT_FALSE(reader.next());
}

TEST(RecordFile, RejectsWrongMagicAndVersion) {
  std::vector<std::byte> bytes(16);
  EXPECT_THROW(FrameParser{bytes}, Error);
  std::memcpy(bytes.data(), kStreamMagic, 8);
  const std::uint32_t future = kStreamVersion + 1;
  std::memcpy(bytes.data() + 8, &future, 4);
  EXPECT_THROW(FrameParser{bytes}, Error);
}

TEST(RecordFile, TruncatedFrameIsAnErrorNotACrash) {
  TempFile tmp;
  {
    StreamWriter w(tmp.path());
    w.write(ContextRecord{});
  }
  const auto size = std::filesystem::file_size(tmp.path());
  std::filesystem::resize_file(tmp.path(), size - 10);
  StreamReader reader(tmp.path());
  EXPECT_THROW(reader.next(), Error);
}

TEST(RecordFile, OversizedFrameIsRefused) {
  std::vector<std::byte> bytes(16 + 8);
  std::memcpy(bytes.data(), kStreamMagic, 8);
  std::memcpy(bytes.data() + 8, &kStreamVersion, 4);
  const std::uint32_t huge = kMaxFramePayload + 1;
  std::memcpy(bytes.data() + 16 + 4, &huge, 4);
  FrameParser p(bytes);
  EXPECT_THROW(p.next(), Error);
}

TEST(RecordFile, FixedPayloadOfWrongSizeIsRefused) {
  std::vector<std::byte> payload(10);
  EXPECT_THROW(decode_fixed<ContextRecord>(payload), Error);
  EXPECT_THROW(decode_vdisk_declaration(payload), Error);
}

}  // namespace
}  // namespace v2p
