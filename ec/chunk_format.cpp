#include "ec/chunk_format.hpp"

#include <cstring>

#include "common/crc32c.hpp"
#include "ec/byte_io.hpp"
#include "ec/coder.hpp"

namespace v2p::ec {
namespace {

constexpr char kMagic[8] = {'V', '2', 'P', 'E', 'C', 'H', 'K', '\0'};

}  // namespace

std::vector<std::uint8_t> encode_chunk_header(const ChunkHeader& h) {
  ByteWriter w;
  w.put_bytes({reinterpret_cast<const std::uint8_t*>(kMagic), sizeof kMagic});
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
  return std::move(w.bytes());
}

Result<ChunkHeader> parse_chunk_header(std::span<const std::uint8_t> bytes) {
  using R = Result<ChunkHeader>;
  if (bytes.size() < kChunkHeaderSize) return R::failure("chunk header is truncated");
  if (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) return R::failure("not a v2p chunk");
  const auto head = bytes.first(kChunkHeaderSize);
  ByteReader r(head.subspan(sizeof kMagic));
  std::uint16_t version = 0, header_len = 0;
  std::uint8_t reserved8 = 0;
  std::uint32_t reserved32 = 0, header_crc = 0;
  ChunkHeader h;
  const bool complete = r.get(version) && r.get(header_len) && r.get(h.k) && r.get(h.m) &&
                        r.get(h.index) && r.get(reserved8) && r.get(h.pool_id) &&
                        r.get(h.container_id) && r.get(h.nonce) && r.get(h.payload_len) &&
                        r.get(h.payload_crc) && r.get(h.created_ns) && r.get(reserved32) &&
                        r.get(header_crc);
  if (!complete) return R::failure("chunk header is truncated");
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
