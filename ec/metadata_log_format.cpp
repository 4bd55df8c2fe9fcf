#include "ec/metadata_log_format.hpp"

#include <cstring>

#include "common/crc32c.hpp"
#include "ec/byte_io.hpp"
#include "ec/chunk_format.hpp"
#include "ec/coder.hpp"

namespace v2p::ec {
namespace {

constexpr char kMagic[8] = {'V', '2', 'P', 'E', 'C', 'L', 'O', 'G'};
constexpr std::uint16_t kVersion = 1;
enum class Type : std::uint8_t { kStoreAdopted = 1, kContainerSealed = 2, kChunkMoved = 3 };

void encode(ByteWriter& w, const StoreAdopted& r) {
  w.put(static_cast<std::uint8_t>(Type::kStoreAdopted));
  w.put(r.store);
  w.put_string(r.domain);
}

void encode(ByteWriter& w, const ContainerSealed& r) {
  w.put(static_cast<std::uint8_t>(Type::kContainerSealed));
  w.put(r.id);
  w.put(r.nonce);
  w.put(r.vm);
  w.put(r.vdisk);
  w.put(r.k);
  w.put(r.m);
  w.put(r.data_len);
  w.put(r.chunk_len);
  w.put(r.created_ns);
  for (auto s : r.stores) w.put(s);
  w.put(static_cast<std::uint32_t>(r.blocks.size()));
  for (const auto& b : r.blocks) {
    w.put(b.voffset);
    w.put(b.length);
    w.put(b.offset);
    w.put(b.crc);
  }
}

void encode(ByteWriter& w, const ChunkMoved& r) {
  w.put(static_cast<std::uint8_t>(Type::kChunkMoved));
  w.put(r.container);
  w.put(r.index);
  w.put(r.store);
}

// Reads one payload into a record; false when it is malformed or inconsistent.
bool decode(std::span<const std::uint8_t> payload, LogRecord& out) {
  ByteReader r(payload);
  std::uint8_t type = 0;
  if (!r.get(type)) return false;
  switch (static_cast<Type>(type)) {
    case Type::kStoreAdopted: {
      StoreAdopted s;
      if (!r.get(s.store) || !r.get_string(s.domain)) return false;
      out = std::move(s);
      break;
    }
    case Type::kContainerSealed: {
      ContainerSealed c;
      if (!r.get(c.id) || !r.get(c.nonce) || !r.get(c.vm) || !r.get(c.vdisk) || !r.get(c.k) ||
          !r.get(c.m) || !r.get(c.data_len) || !r.get(c.chunk_len) || !r.get(c.created_ns)) {
        return false;
      }
      if (c.k < 1 || c.k > kMaxK || c.m < 1 || c.m > kMaxM) return false;
      if (c.chunk_len > kMaxChunkPayload ||
          std::uint64_t{c.data_len} > std::uint64_t{c.chunk_len} * c.k) {
        return false;
      }
      c.stores.resize(static_cast<std::size_t>(c.k) + c.m);
      for (auto& s : c.stores) {
        if (!r.get(s)) return false;
      }
      std::uint32_t nblocks = 0;
      if (!r.get(nblocks) || nblocks > r.remaining() / 20) return false;
      c.blocks.resize(nblocks);
      for (auto& b : c.blocks) {
        if (!r.get(b.voffset) || !r.get(b.length) || !r.get(b.offset) || !r.get(b.crc)) {
          return false;
        }
        if (b.length == 0 || std::uint64_t{b.offset} + b.length > c.data_len ||
            b.voffset > UINT64_MAX - b.length) {
          return false;
        }
      }
      out = std::move(c);
      break;
    }
    case Type::kChunkMoved: {
      ChunkMoved c;
      if (!r.get(c.container) || !r.get(c.index) || !r.get(c.store)) return false;
      out = c;
      break;
    }
    default:
      return false;
  }
  return r.remaining() == 0;
}

}  // namespace

std::vector<std::uint8_t> encode_log_header(std::uint64_t pool_id) {
  ByteWriter w;
  w.put_bytes({reinterpret_cast<const std::uint8_t*>(kMagic), sizeof kMagic});
  w.put(kVersion);
  w.put<std::uint16_t>(0);
  w.put(pool_id);
  w.put(crc32c(w.bytes()));
  return std::move(w.bytes());
}

std::vector<std::uint8_t> encode_log_record(const LogRecord& rec) {
  ByteWriter payload;
  std::visit([&](const auto& r) { encode(payload, r); }, rec);
  ByteWriter w;
  w.put(static_cast<std::uint32_t>(payload.bytes().size()));
  w.put(crc32c(payload.bytes()));
  w.put_bytes(payload.bytes());
  return std::move(w.bytes());
}

Result<LogContents> parse_log(std::span<const std::uint8_t> bytes) {
  using R = Result<LogContents>;
  if (bytes.size() < kLogHeaderSize || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) {
    return R::failure("not a v2p ec metadata log");
  }
  ByteReader h(bytes.subspan(sizeof kMagic, kLogHeaderSize - sizeof kMagic));
  std::uint16_t version = 0, zero = 0;
  std::uint32_t crc = 0;
  LogContents out;
  if (!h.get(version) || !h.get(zero) || !h.get(out.pool_id) || !h.get(crc) ||
      crc32c(bytes.first(kLogHeaderSize - 4)) != crc) {
    return R::failure("metadata log header is damaged");
  }
  if (version != kVersion) {
    return R::failure("metadata log version " + std::to_string(version) + " is not supported");
  }
  std::size_t pos = kLogHeaderSize;
  while (pos < bytes.size()) {
    ByteReader r(bytes.subspan(pos));
    std::uint32_t len = 0, rec_crc = 0;
    if (!r.get(len) || !r.get(rec_crc) || len > kMaxLogRecord || r.remaining() < len) {
      out.tail_problem = "torn record at byte " + std::to_string(pos);
      break;
    }
    const auto payload = bytes.subspan(pos + 8, len);
    if (crc32c(payload) != rec_crc) {
      out.tail_problem = "record checksum mismatch at byte " + std::to_string(pos);
      break;
    }
    LogRecord rec;
    if (!decode(payload, rec)) {
      out.tail_problem = "malformed record at byte " + std::to_string(pos);
      break;
    }
    out.records.push_back(std::move(rec));
    pos += 8 + len;
  }
  out.valid_bytes = pos;
  return out;
}

}  // namespace v2p::ec
