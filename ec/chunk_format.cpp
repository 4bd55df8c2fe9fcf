#include "ec/chunk_format.hpp"

#include <cstring>

#include "common/crc32c.hpp"
#include "common/error.hpp"
#include "common/payload_codec.hpp"
#include "ec/coder.hpp"

namespace v2p::ec {
namespace {

constexpr char kMagic[8] = {'V', '2', 'P', 'E', 'C', 'H', 'K', '\0'};

}  // namespace

std::vector<std::uint8_t> encode_chunk_header(const ChunkHeader& h) {
  PayloadWriter w;
  w.put_bytes(std::as_bytes(std::span(kMagic)));
  w.put<std::uint16_t>(kChunkVersion);
  w.put<std::uint16_t>(kChunkHeaderSize);
  w.put(h.k);
  w.put(h.m);
  w.put(h.index);
  w.put<std::uint8_t>(0);
  w.put(h.pool_id);
  w.put(h.container_id);
  w.put(h.nonce);
  w.put(h.payload_len);
  w.put(h.payload_crc);
  w.put(h.created_ns);
  w.put<std::uint32_t>(0);
  w.put(crc32c(w.bytes()));
  return std::move(w).take<std::uint8_t>();
}

Result<ChunkHeader> parse_chunk_header(std::span<const std::uint8_t> bytes) {
  using R = Result<ChunkHeader>;
  if (bytes.size() < kChunkHeaderSize) return R::failure("chunk header is truncated");
  if (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) return R::failure("not a v2p chunk");
  const auto head = bytes.first(kChunkHeaderSize);
  std::uint16_t version = 0, header_len = 0;
  std::uint32_t header_crc = 0;
  ChunkHeader h;
  try {
    PayloadReader r(std::as_bytes(head.subspan(sizeof kMagic)), "chunk header");
    version = r.get<std::uint16_t>();
    header_len = r.get<std::uint16_t>();
    h.k = r.get<std::uint8_t>();
    h.m = r.get<std::uint8_t>();
    h.index = r.get<std::uint8_t>();
    r.get<std::uint8_t>();  // reserved
    h.pool_id = r.get<std::uint64_t>();
    h.container_id = r.get<std::uint64_t>();
    h.nonce = r.get<std::uint64_t>();
    h.payload_len = r.get<std::uint32_t>();
    h.payload_crc = r.get<std::uint32_t>();
    h.created_ns = r.get<std::uint64_t>();
    r.get<std::uint32_t>();  // reserved
    header_crc = r.get<std::uint32_t>();
  } catch (const Error& e) {  // the data path returns its failures: "chunk header is truncated"
    return R::failure(e.what());
  }
  if (crc32c(head.first(kChunkHeaderSize - 4)) != header_crc) {
    return R::failure("chunk header checksum mismatch");
  }
  if (version != kChunkVersion) {
    return R::failure("chunk format version " + std::to_string(version) + " is not supported");
  }
  if (header_len != kChunkHeaderSize) return R::failure("chunk header length is wrong");
  if (h.k < 1 || h.k > kMaxK || h.m < 1 || h.m > kMaxM || h.index >= h.k + h.m) {
    return R::failure("chunk header has an impossible k+m or index");
  }
  if (h.payload_len > kMaxChunkPayload) return R::failure("chunk payload length is too large");
  return h;
}

}  // namespace v2p::ec
