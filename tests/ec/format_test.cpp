// The on-disk formats: chunk headers and the metadata log, including a torn and a corrupt tail.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "common/error.hpp"
#include "ec/chunk_format.hpp"
#include "ec/metadata_log.hpp"

namespace v2p::ec {
namespace {

namespace fs = std::filesystem;

std::string to_hex(std::span<const std::uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (auto b : bytes) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0xf];
  }
  return out;
}

std::vector<std::uint8_t> from_hex(std::string_view hex) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

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

// The bytes on disk, field by field, as docs/ec.md lays them out: a change to the encoder that
// moves a single byte fails here, and the parser must read these exact bytes back.
TEST(EcChunkFormat, EncodingIsPinned) {
  const ChunkHeader h{.k = 4,
                      .m = 2,
                      .index = 5,
                      .pool_id = 0x1122334455667788ULL,
                      .container_id = 0x99aabbccddeeff00ULL,
                      .nonce = 0x0123456789abcdefULL,
                      .payload_len = 1 << 20,
                      .payload_crc = 0xdeadbeef,
                      .created_ns = 1700000000123456789ULL};
  const std::string golden =
      "5632504543484b00"  // magic "V2PECHK\0"
      "0100"              // version 1
      "4000"              // header length 64
      "04020500"          // k, m, chunk index, reserved
      "8877665544332211"  // pool id
      "00ffeeddccbbaa99"  // container id
      "efcdab8967452301"  // seal nonce
      "00001000"          // payload length
      "efbeadde"          // payload CRC
      "15cd853dfe9c9717"  // created ns
      "00000000"          // reserved
      "c3f306d8";         // header CRC
  EXPECT_EQ(to_hex(encode_chunk_header(h)), golden);
  const auto parsed = parse_chunk_header(from_hex(golden));
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_EQ(parsed.value(), h);
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

// The metadata log's bytes, pinned like the chunk header's above.
TEST(EcLogFormat, EncodingIsPinned) {
  const std::string header =
      "56325045434c4f47"  // magic "V2PECLOG"
      "0100"              // version 1
      "0000"              // zero
      "0807060504030201"  // pool id
      "c67149bb";         // header CRC
  const StoreAdopted adopted{7, "rack-a/vdb"};
  const std::string adopted_hex =
      "11000000"               // payload length 17
      "2763056e"               // payload CRC
      "01"                     // type: store adopted
      "07000000"               // store
      "0a00"                   // domain: u16 length
      "7261636b2d612f766462";  // "rack-a/vdb"
  ContainerSealed sealed;
  sealed.id = 0x1000000000000001ULL;
  sealed.nonce = 0xfeedfacecafebeefULL;
  sealed.vm = 3;
  sealed.vdisk = 1;
  sealed.k = 2;
  sealed.m = 1;
  sealed.data_len = 8192;
  sealed.chunk_len = 4096;
  sealed.created_ns = 5;
  sealed.stores = {10, 11, 12};
  sealed.blocks = {{0, 4096, 0, 0x11111111}, {1 << 20, 4096, 4096, 0x22222222}};
  const std::string sealed_hex =
      "63000000"                   // payload length 99
      "c965a78a"                   // payload CRC
      "02"                         // type: container sealed
      "0100000000000010"           // id
      "efbefecacefaedfe"           // nonce
      "03000000"                   // vm
      "01000000"                   // vdisk
      "0201"                       // k, m
      "00200000"                   // data length
      "00100000"                   // chunk length
      "0500000000000000"           // created ns
      "0a0000000b0000000c000000"   // store of each chunk
      "02000000"                   // block count
      "0000000000000000"           // block 0: voffset
      "001000000000000011111111"   //   length, offset, CRC
      "0000100000000000"           // block 1: voffset
      "001000000010000022222222";  //   length, offset, CRC
  const ChunkMoved moved{0x1122334455667788ULL, 3, 42};
  const std::string moved_hex =
      "0e000000"          // payload length 14
      "45f95a6c"          // payload CRC
      "03"                // type: chunk moved
      "8877665544332211"  // container
      "03"                // index
      "2a000000";         // store
  EXPECT_EQ(to_hex(encode_log_header(0x0102030405060708ULL)), header);
  EXPECT_EQ(to_hex(encode_log_record(adopted)), adopted_hex);
  EXPECT_EQ(to_hex(encode_log_record(sealed)), sealed_hex);
  EXPECT_EQ(to_hex(encode_log_record(moved)), moved_hex);

  const auto bytes = from_hex(header + adopted_hex + sealed_hex + moved_hex);
  const auto parsed = parse_log(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_EQ(parsed.value().pool_id, 0x0102030405060708ULL);
  EXPECT_EQ(parsed.value().records, (std::vector<LogRecord>{adopted, sealed, moved}));
  EXPECT_EQ(parsed.value().valid_bytes, bytes.size());
  EXPECT_TRUE(parsed.value().tail_problem.empty()) << parsed.value().tail_problem;
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
