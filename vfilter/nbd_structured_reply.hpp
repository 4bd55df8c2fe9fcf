// Reply framing for the transmission phase: simple replies, structured reply chunks
// (NBD_OPT_STRUCTURED_REPLY) and extended reply chunks (NBD_OPT_EXTENDED_HEADERS). Pure: the
// connection sends what these build. Fixed-size frames, so the per-request reply path does not
// allocate; only a block-status chunk, whose size depends on the extents, is a vector.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace v2p::vfilter {

// How replies are framed on one connection, as the handshake agreed.
enum class ReplyStyle : std::uint8_t { kSimple, kStructured, kExtended };

namespace nbd {
inline constexpr std::uint32_t kStructuredReplyMagic = 0x668e33ef;
inline constexpr std::uint32_t kExtendedReplyMagic = 0x6e8a278c;
inline constexpr std::uint32_t kExtendedRequestMagic = 0x21e41c71;
inline constexpr std::uint16_t kReplyFlagDone = 1 << 0;
inline constexpr std::uint16_t kReplyTypeNone = 0;
inline constexpr std::uint16_t kReplyTypeOffsetData = 1;
inline constexpr std::uint16_t kReplyTypeOffsetHole = 2;
inline constexpr std::uint16_t kReplyTypeBlockStatus = 5;
inline constexpr std::uint16_t kReplyTypeBlockStatusExt = 6;
inline constexpr std::uint16_t kReplyTypeError = (1U << 15) + 1;
inline constexpr std::uint32_t kStateHole = 1 << 0;
inline constexpr std::uint32_t kStateZero = 1 << 1;
}  // namespace nbd

// A reply header (and the fixed part of its payload) built in place.
class ReplyFrame {
 public:
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return {buf_.data(), size_}; }
  void be16(std::uint16_t v) noexcept;
  void be32(std::uint32_t v) noexcept;
  void be64(std::uint64_t v) noexcept;

 private:
  std::array<std::byte, 48> buf_{};
  std::size_t size_ = 0;
};

// What a reply answers: the request's cookie and offset (extended headers echo the offset).
struct ReplyTo {
  std::uint64_t cookie = 0;
  std::uint64_t offset = 0;
};

// The reply to a request without data: success or an error. Simple replies for the simple and
// structured styles (the protocol allows them for everything but READ), an extended chunk
// (NONE, or ERROR with the error) for extended headers.
ReplyFrame status_reply(ReplyStyle style, ReplyTo to, std::uint32_t error) noexcept;

// The reply to a successful READ of `data_len` bytes; the data follows the frame on the wire.
// Simple style: a simple reply header; otherwise one final OFFSET_DATA chunk.
ReplyFrame read_reply(ReplyStyle style, ReplyTo to, std::uint64_t data_len) noexcept;

// A final OFFSET_HOLE chunk: `len` bytes at the request's offset read as zeros (not simple).
ReplyFrame hole_reply(ReplyStyle style, ReplyTo to, std::uint32_t len) noexcept;

// A final error chunk (not simple): the answer to a failed READ and BLOCK_STATUS.
ReplyFrame error_chunk(ReplyStyle style, ReplyTo to, std::uint32_t error) noexcept;

// One extent of a block-status answer.
struct Extent {
  std::uint64_t length = 0;
  std::uint32_t flags = 0;
};

// A final BLOCK_STATUS chunk for one metadata context (BLOCK_STATUS_EXT with extended headers).
// Extents longer than 32 bits are split for the compact form; the caller bounds their number.
std::vector<std::byte> block_status_reply(ReplyStyle style, ReplyTo to, std::uint32_t context_id,
                                          std::span<const Extent> extents);

}  // namespace v2p::vfilter
