#include "ec/metadata_log_format.hpp"

#include <cstring>

#include "common/crc32c.hpp"
#include "common/error.hpp"
#include "common/payload_codec.hpp"
#include "ec/chunk_format.hpp"
#include "ec/coder.hpp"

namespace v2p::ec {
namespace {

constexpr char kMagic[8] = {'V', '2', 'P', 'E', 'C', 'L', 'O', 'G'};
constexpr std::uint16_t kVersion = 1;
enum class Type : std::uint8_t { kStoreAdopted = 1, kContainerSealed = 2, kChunkMoved = 3 };

void encode(PayloadWriter& w, const StoreAdopted& r) {
  w.put(static_cast<std::uint8_t>(Type::kStoreAdopted));
  w.put(r.store);
  w.put_string<std::uint16_t>(r.domain);
}

void encode(PayloadWriter& w, const ContainerSealed& r) {
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

void encode(PayloadWriter& w, const ChunkMoved& r) {
  w.put(static_cast<std::uint8_t>(Type::kChunkMoved));
  w.put(r.container);
  w.put(r.index);
  w.put(r.store);
}

// Reads one record's fields; false when they are inconsistent. Throws (v2p::Error) when the
// payload is short.
bool read_record(PayloadReader& r, LogRecord& out) {
  switch (static_cast<Type>(r.get<std::uint8_t>())) {
    case Type::kStoreAdopted: {
      StoreAdopted s;
      s.store = r.get<std::uint32_t>();
      s.domain = r.get_string<std::uint16_t>();
      out = std::move(s);
      return true;
    }
    case Type::kContainerSealed: {
      ContainerSealed c;
      c.id = r.get<std::uint64_t>();
      c.nonce = r.get<std::uint64_t>();
      c.vm = r.get<std::uint32_t>();
      c.vdisk = r.get<std::uint32_t>();
      c.k = r.get<std::uint8_t>();
      c.m = r.get<std::uint8_t>();
      c.data_len = r.get<std::uint32_t>();
      c.chunk_len = r.get<std::uint32_t>();
      c.created_ns = r.get<std::uint64_t>();
      if (c.k < 1 || c.k > kMaxK || c.m < 1 || c.m > kMaxM) return false;
      if (c.chunk_len > kMaxChunkPayload ||
          std::uint64_t{c.data_len} > std::uint64_t{c.chunk_len} * c.k) {
        return false;
      }
      c.stores.resize(static_cast<std::size_t>(c.k) + c.m);
      for (auto& s : c.stores) s = r.get<std::uint32_t>();
      const auto nblocks = r.get<std::uint32_t>();
      if (nblocks > r.remaining() / 20) return false;
      c.blocks.resize(nblocks);
      for (auto& b : c.blocks) {
        b.voffset = r.get<std::uint64_t>();
        b.length = r.get<std::uint32_t>();
        b.offset = r.get<std::uint32_t>();
        b.crc = r.get<std::uint32_t>();
        if (b.length == 0 || std::uint64_t{b.offset} + b.length > c.data_len ||
            b.voffset > UINT64_MAX - b.length) {
          return false;
        }
      }
      out = std::move(c);
      return true;
    }
    case Type::kChunkMoved: {
      ChunkMoved c;
      c.container = r.get<std::uint64_t>();
      c.index = r.get<std::uint8_t>();
      c.store = r.get<std::uint32_t>();
      out = c;
      return true;
    }
  }
  return false;  // an unknown type
}

// Reads one payload into a record; false when it is malformed or inconsistent.
bool decode(std::span<const std::byte> payload, LogRecord& out) {
  PayloadReader r(payload, "metadata log record");
  try {
    if (!read_record(r, out)) return false;
    r.expect_end();
    return true;
  } catch (const Error&) {  // short, or with trailing bytes: malformed all the same
    return false;
  }
}

}  // namespace

std::vector<std::uint8_t> encode_log_header(std::uint64_t pool_id) {
  PayloadWriter w;
  w.put_bytes(std::as_bytes(std::span(kMagic)));
  w.put(kVersion);
  w.put<std::uint16_t>(0);
  w.put(pool_id);
  w.put(crc32c(w.bytes()));
  return std::move(w).take<std::uint8_t>();
}

std::vector<std::uint8_t> encode_log_record(const LogRecord& rec) {
  PayloadWriter payload;
  std::visit([&](const auto& r) { encode(payload, r); }, rec);
  PayloadWriter w;
  w.put(static_cast<std::uint32_t>(payload.bytes().size()));
  w.put(crc32c(payload.bytes()));
  w.put_bytes(payload.bytes());
  return std::move(w).take<std::uint8_t>();
}

Result<LogContents> parse_log(std::span<const std::uint8_t> bytes) {
  using R = Result<LogContents>;
  if (bytes.size() < kLogHeaderSize || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) {
    return R::failure("not a v2p ec metadata log");
  }
  const auto all = std::as_bytes(bytes);
  LogContents out;
  std::uint16_t version = 0;
  try {
    PayloadReader h(all.subspan(sizeof kMagic, kLogHeaderSize - sizeof kMagic),
                    "metadata log header");
    version = h.get<std::uint16_t>();
    h.get<std::uint16_t>();  // zero
    out.pool_id = h.get<std::uint64_t>();
    if (crc32c(all.first(kLogHeaderSize - 4)) != h.get<std::uint32_t>()) {
      return R::failure("metadata log header is damaged");
    }
  } catch (const Error& e) {  // the data path returns its failures
    return R::failure(e.what());
  }
  if (version != kVersion) {
    return R::failure("metadata log version " + std::to_string(version) + " is not supported");
  }
  std::size_t pos = kLogHeaderSize;
  while (pos < all.size()) {
    // Checked before every read, so a torn tail is reported here and never thrown.
    PayloadReader r(all.subspan(pos), "metadata log record");
    if (r.remaining() < 8) {
      out.tail_problem = "torn record at byte " + std::to_string(pos);
      break;
    }
    const auto len = r.get<std::uint32_t>();
    const auto rec_crc = r.get<std::uint32_t>();
    if (len > kMaxLogRecord || r.remaining() < len) {
      out.tail_problem = "torn record at byte " + std::to_string(pos);
      break;
    }
    const auto payload = r.get_bytes(len);
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
