// The on-disk formats: chunk headers and the metadata log, including a torn and a corrupt tail.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "ec/chunk_format.hpp"
#include "ec/metadata_log.hpp"

namespace v2p::ec {
namespace {

namespace fs = std::filesystem;

ChunkHeader sample_header() {
  return {4, 2, 5, 0x1122334455667788ULL, 99, 0xabcdef, 1 << 20, 0xdeadbeef, 123456789};
}

TEST(EcChunkFormat, RoundTrips) {
  const auto bytes = encode_chunk_header(sample_header());
  ASSERT_EQ(bytes.size(), kChunkHeaderSize);
  auto h = parse_chunk_header(bytes);
  ASSERT_TRUE(h.ok()) << h.error();
  EXPECT_EQ(h.value(), sample_header());
}

TEST(EcChunkFormat, EveryFlippedBitIsRejected) {
  const auto good = encode_chunk_header(sample_header());
  for (std::size_t bit = 0; bit < good.size() * 8; ++bit) {
    auto bad = good;
    bad[bit / 8] ^= static_cast<std::uint8_t>(1U << (bit % 8));
    EXPECT_FALSE(parse_chunk_header(bad).ok()) << "bit " << bit;
  }
  EXPECT_FALSE(parse_chunk_header(std::span(good).first(63)).ok());
}

TEST(EcChunkFormat, ImpossibleFieldsAreRejectedEvenWithAValidCrc) {
  auto h = sample_header();
  h.index = 6;  // k + m = 6: indices 0..5
  EXPECT_FALSE(parse_chunk_header(encode_chunk_header(h)).ok());
  h = sample_header();
  h.payload_len = kMaxChunkPayload + 1;
  EXPECT_FALSE(parse_chunk_header(encode_chunk_header(h)).ok());
}

ContainerSealed sample_container(std::uint64_t id) {
  ContainerSealed c;
  c.id = id;
  c.nonce = id * 7;
  c.vm = 3;
  c.vdisk = 1;
  c.k = 4;
  c.m = 2;
  c.data_len = 8192;
  c.chunk_len = 2048;
  c.created_ns = 5;
  c.stores = {1, 2, 3, 4, 5, 6};
  c.blocks = {{0, 4096, 0, 11}, {1 << 20, 4096, 4096, 22}};
  return c;
}

class EcLogDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("v2p-ec-log." + std::to_string(::getpid()));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(EcLogDir, ReplaysWhatWasAppended) {
  std::uint64_t pool = 0;
  {
    MetadataLog log(dir_, 77);
    EXPECT_TRUE(log.created());
    pool = log.pool_id();
    log.append(StoreAdopted{1, "vda (254:0)"});
    log.append(sample_container(1));
    log.append(ChunkMoved{1, 2, 9});
  }
  MetadataLog log(dir_, 78);
  EXPECT_FALSE(log.created());
  EXPECT_EQ(log.pool_id(), pool);
  ASSERT_EQ(log.replayed().size(), 3U);
  EXPECT_EQ(std::get<StoreAdopted>(log.replayed()[0]).domain, "vda (254:0)");
  EXPECT_EQ(std::get<ContainerSealed>(log.replayed()[1]), sample_container(1));
  EXPECT_EQ(std::get<ChunkMoved>(log.replayed()[2]).store, 9U);
  EXPECT_TRUE(log.dropped_tail().empty());
}

TEST_F(EcLogDir, SecondOpenerIsRefused) {
  MetadataLog first(dir_, 1);
  EXPECT_THROW(MetadataLog(dir_, 1), Error);
}

// A crash in the middle of an append leaves a prefix of the record: it is dropped, and the next
// append follows the last complete record.
TEST_F(EcLogDir, TornTailIsDroppedAndOverwritten) {
  for (std::size_t cut = 1; cut < encode_log_record(sample_container(2)).size(); cut += 7) {
    fs::remove_all(dir_);
    {
      MetadataLog log(dir_, 1);
      log.append(sample_container(1));
    }
    const auto full = fs::file_size(dir_ / "ec.log");
    {
      const auto rec = encode_log_record(sample_container(2));
      std::ofstream out(dir_ / "ec.log", std::ios::app | std::ios::binary);
      out.write(reinterpret_cast<const char*>(rec.data()), static_cast<std::streamsize>(cut));
    }
    {
      MetadataLog log(dir_, 1);
      ASSERT_EQ(log.replayed().size(), 1U) << "cut " << cut;
      EXPECT_FALSE(log.dropped_tail().empty());
      EXPECT_EQ(fs::file_size(dir_ / "ec.log"), full);
      log.append(sample_container(3));
    }
    MetadataLog log(dir_, 1);
    ASSERT_EQ(log.replayed().size(), 2U);
    EXPECT_EQ(std::get<ContainerSealed>(log.replayed()[1]).id, 3U);
  }
}

TEST_F(EcLogDir, CorruptRecordEndsTheReplay) {
  {
    MetadataLog log(dir_, 1);
    log.append(sample_container(1));
    log.append(sample_container(2));
  }
  {
    std::fstream f(dir_ / "ec.log", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x5a');
  }
  MetadataLog log(dir_, 1);
  EXPECT_EQ(log.replayed().size(), 1U);
  EXPECT_NE(log.dropped_tail().find("checksum"), std::string::npos) << log.dropped_tail();
}

TEST(EcLogFormat, DamagedHeaderIsAnError) {
  auto bytes = encode_log_header(5);
  EXPECT_TRUE(parse_log(bytes).ok());
  bytes[12] ^= 1;
  EXPECT_FALSE(parse_log(bytes).ok());
  EXPECT_FALSE(parse_log(std::span(bytes).first(10)).ok());
}

TEST(EcLogFormat, InconsistentContainerIsNotReplayed) {
  auto c = sample_container(1);
  c.blocks[1].offset = 8000;  // 8000 + 4096 > data_len
  auto bytes = encode_log_header(5);
  const auto rec = encode_log_record(c);
  bytes.insert(bytes.end(), rec.begin(), rec.end());
  auto parsed = parse_log(bytes);
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(parsed.value().records.empty());
  EXPECT_NE(parsed.value().tail_problem.find("malformed"), std::string::npos);
}

}  // namespace
}  // namespace v2p::ec
