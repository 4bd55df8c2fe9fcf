#include "vfilter/nbd_structured_reply.hpp"

#include <algorithm>

#include "vfilter/nbd_wire.hpp"

namespace v2p::vfilter {

using namespace nbd;

void ReplyFrame::be16(std::uint16_t v) noexcept {
  buf_[size_++] = std::byte(v >> 8);
  buf_[size_++] = std::byte(v & 0xff);
}
void ReplyFrame::be32(std::uint32_t v) noexcept {
  be16(static_cast<std::uint16_t>(v >> 16));
  be16(static_cast<std::uint16_t>(v & 0xffff));
}
void ReplyFrame::be64(std::uint64_t v) noexcept {
  be32(static_cast<std::uint32_t>(v >> 32));
  be32(static_cast<std::uint32_t>(v & 0xffffffffU));
}

namespace {

// The chunk header of the structured or extended style.
void chunk_header(ReplyFrame& f, ReplyStyle style, ReplyTo to, std::uint16_t flags,
                  std::uint16_t type, std::uint64_t payload) noexcept {
  if (style == ReplyStyle::kExtended) {
    f.be32(kExtendedReplyMagic);
    f.be16(flags);
    f.be16(type);
    f.be64(to.cookie);
    f.be64(to.offset);
    f.be64(payload);
  } else {
    f.be32(kStructuredReplyMagic);
    f.be16(flags);
    f.be16(type);
    f.be64(to.cookie);
    f.be32(static_cast<std::uint32_t>(payload));
  }
}

}  // namespace

ReplyFrame error_chunk(ReplyStyle style, ReplyTo to, std::uint32_t error) noexcept {
  ReplyFrame f;
  chunk_header(f, style, to, kReplyFlagDone, kReplyTypeError, 6);
  f.be32(error == 0 ? kEio : error);
  f.be16(0);  // no message: the error number is all a client acts on
  return f;
}

ReplyFrame status_reply(ReplyStyle style, ReplyTo to, std::uint32_t error) noexcept {
  if (style != ReplyStyle::kExtended) {
    ReplyFrame f;
    f.be32(kSimpleReplyMagic);
    f.be32(error);
    f.be64(to.cookie);
    return f;
  }
  if (error != 0) return error_chunk(style, to, error);
  ReplyFrame f;
  chunk_header(f, style, to, kReplyFlagDone, kReplyTypeNone, 0);
  return f;
}

ReplyFrame read_reply(ReplyStyle style, ReplyTo to, std::uint64_t data_len) noexcept {
  if (style == ReplyStyle::kSimple) return status_reply(style, to, 0);
  ReplyFrame f;
  chunk_header(f, style, to, kReplyFlagDone, kReplyTypeOffsetData, 8 + data_len);
  f.be64(to.offset);
  return f;
}

ReplyFrame hole_reply(ReplyStyle style, ReplyTo to, std::uint32_t len) noexcept {
  ReplyFrame f;
  chunk_header(f, style, to, kReplyFlagDone, kReplyTypeOffsetHole, 12);
  f.be64(to.offset);
  f.be32(len);
  return f;
}

std::vector<std::byte> block_status_reply(ReplyStyle style, ReplyTo to, std::uint32_t context_id,
                                          std::span<const Extent> extents) {
  std::vector<std::byte> out;
  if (style == ReplyStyle::kExtended) {
    std::vector<std::byte> body;
    put_be32(body, context_id);
    put_be32(body, static_cast<std::uint32_t>(extents.size()));
    for (const Extent& e : extents) {
      put_be64(body, e.length);
      put_be64(body, e.flags);
    }
    ReplyFrame f;
    chunk_header(f, style, to, kReplyFlagDone, kReplyTypeBlockStatusExt, body.size());
    out.assign(f.bytes().begin(), f.bytes().end());
    out.insert(out.end(), body.begin(), body.end());
    return out;
  }
  // Compact descriptors carry 32-bit lengths: split longer extents, at a 4 KiB multiple so the
  // pieces stay aligned to any block size we advertise.
  constexpr std::uint64_t kMaxPiece = 0xffffffffULL & ~0xfffULL;
  std::vector<std::byte> body;
  put_be32(body, context_id);
  for (const Extent& e : extents) {
    for (std::uint64_t left = e.length; left > 0;) {
      const std::uint64_t piece = std::min(left, kMaxPiece);
      put_be32(body, static_cast<std::uint32_t>(piece));
      put_be32(body, e.flags);
      left -= piece;
    }
  }
  ReplyFrame f;
  chunk_header(f, style, to, kReplyFlagDone, kReplyTypeBlockStatus, body.size());
  out.assign(f.bytes().begin(), f.bytes().end());
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

}  // namespace v2p::vfilter
