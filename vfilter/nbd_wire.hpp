// NBD protocol constants (doc/proto.md of NetworkBlockDevice/nbd) and big-endian byte helpers.
// Everything here is pure: no sockets, so the parsers built on it are unit-testable and fuzzable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace v2p::vfilter::nbd {

inline constexpr std::uint64_t kNbdMagic = 0x4e42444d41474943ULL;  // "NBDMAGIC"
inline constexpr std::uint64_t kOptMagic = 0x49484156454F5054ULL;  // "IHAVEOPT"
inline constexpr std::uint64_t kOptReplyMagic = 0x3e889045565a9ULL;
inline constexpr std::uint32_t kRequestMagic = 0x25609513;
inline constexpr std::uint32_t kSimpleReplyMagic = 0x67446698;

// Handshake flags (server) and client flags.
inline constexpr std::uint16_t kFlagFixedNewstyle = 1 << 0;
inline constexpr std::uint16_t kFlagNoZeroes = 1 << 1;
inline constexpr std::uint32_t kClientFixedNewstyle = 1 << 0;
inline constexpr std::uint32_t kClientNoZeroes = 1 << 1;

// Options.
inline constexpr std::uint32_t kOptExportName = 1;
inline constexpr std::uint32_t kOptAbort = 2;
inline constexpr std::uint32_t kOptList = 3;
inline constexpr std::uint32_t kOptStartTls = 5;
inline constexpr std::uint32_t kOptInfo = 6;
inline constexpr std::uint32_t kOptGo = 7;
inline constexpr std::uint32_t kOptStructuredReply = 8;
inline constexpr std::uint32_t kOptListMetaContext = 9;
inline constexpr std::uint32_t kOptSetMetaContext = 10;
inline constexpr std::uint32_t kOptExtendedHeaders = 11;

// Option replies.
inline constexpr std::uint32_t kRepAck = 1;
inline constexpr std::uint32_t kRepServer = 2;
inline constexpr std::uint32_t kRepInfo = 3;
inline constexpr std::uint32_t kRepMetaContext = 4;
inline constexpr std::uint32_t kRepErrBit = 1U << 31;
inline constexpr std::uint32_t kRepErrUnsup = kRepErrBit | 1;
inline constexpr std::uint32_t kRepErrPolicy = kRepErrBit | 2;
inline constexpr std::uint32_t kRepErrInvalid = kRepErrBit | 3;
inline constexpr std::uint32_t kRepErrTlsReqd = kRepErrBit | 5;
inline constexpr std::uint32_t kRepErrUnknown = kRepErrBit | 6;
inline constexpr std::uint32_t kRepErrTooBig = kRepErrBit | 9;

// NBD_INFO_* types inside NBD_REP_INFO.
inline constexpr std::uint16_t kInfoExport = 0;
inline constexpr std::uint16_t kInfoName = 1;
inline constexpr std::uint16_t kInfoDescription = 2;
inline constexpr std::uint16_t kInfoBlockSize = 3;

// Transmission flags.
inline constexpr std::uint16_t kTxHasFlags = 1 << 0;
inline constexpr std::uint16_t kTxReadOnly = 1 << 1;
inline constexpr std::uint16_t kTxSendFlush = 1 << 2;
inline constexpr std::uint16_t kTxSendFua = 1 << 3;
inline constexpr std::uint16_t kTxSendTrim = 1 << 5;
inline constexpr std::uint16_t kTxSendWriteZeroes = 1 << 6;
inline constexpr std::uint16_t kTxSendDf = 1 << 7;
inline constexpr std::uint16_t kTxCanMultiConn = 1 << 8;
inline constexpr std::uint16_t kTxSendCache = 1 << 10;

// Commands and command flags.
inline constexpr std::uint16_t kCmdRead = 0;
inline constexpr std::uint16_t kCmdWrite = 1;
inline constexpr std::uint16_t kCmdDisc = 2;
inline constexpr std::uint16_t kCmdFlush = 3;
inline constexpr std::uint16_t kCmdTrim = 4;
inline constexpr std::uint16_t kCmdCache = 5;
inline constexpr std::uint16_t kCmdWriteZeroes = 6;
inline constexpr std::uint16_t kCmdBlockStatus = 7;
inline constexpr std::uint16_t kCmdFlagFua = 1 << 0;
inline constexpr std::uint16_t kCmdFlagNoHole = 1 << 1;
inline constexpr std::uint16_t kCmdFlagDf = 1 << 2;
inline constexpr std::uint16_t kCmdFlagReqOne = 1 << 3;

// Error values carried in replies (fixed by the protocol, not the host's errno).
inline constexpr std::uint32_t kEperm = 1;
inline constexpr std::uint32_t kEio = 5;
inline constexpr std::uint32_t kEnomem = 12;
inline constexpr std::uint32_t kEinval = 22;
inline constexpr std::uint32_t kEnospc = 28;
inline constexpr std::uint32_t kEoverflow = 75;
inline constexpr std::uint32_t kEnotsup = 95;
inline constexpr std::uint32_t kEshutdown = 108;

inline constexpr std::size_t kRequestSize = 28;
inline constexpr std::size_t kSimpleReplySize = 16;
// Largest READ/WRITE payload we advertise and accept.
inline constexpr std::uint32_t kMaxPayload = 32U << 20;

// Host errno (positive) to the protocol's error set.
std::uint32_t errno_to_nbd(int err) noexcept;

// Big-endian helpers. `get_*` callers bounds-check before calling.
inline std::uint16_t get_be16(const std::byte* p) noexcept {
  return static_cast<std::uint16_t>((std::to_integer<unsigned>(p[0]) << 8) |
                                    std::to_integer<unsigned>(p[1]));
}
inline std::uint32_t get_be32(const std::byte* p) noexcept {
  return (std::uint32_t{get_be16(p)} << 16) | get_be16(p + 2);
}
inline std::uint64_t get_be64(const std::byte* p) noexcept {
  return (std::uint64_t{get_be32(p)} << 32) | get_be32(p + 4);
}
inline void put_be16(std::vector<std::byte>& out, std::uint16_t v) {
  out.push_back(std::byte(v >> 8));
  out.push_back(std::byte(v & 0xff));
}
inline void put_be32(std::vector<std::byte>& out, std::uint32_t v) {
  put_be16(out, static_cast<std::uint16_t>(v >> 16));
  put_be16(out, static_cast<std::uint16_t>(v & 0xffff));
}
inline void put_be64(std::vector<std::byte>& out, std::uint64_t v) {
  put_be32(out, static_cast<std::uint32_t>(v >> 32));
  put_be32(out, static_cast<std::uint32_t>(v & 0xffffffffU));
}
inline void put_bytes(std::vector<std::byte>& out, std::string_view s) {
  for (char c : s) out.push_back(static_cast<std::byte>(c));
}

}  // namespace v2p::vfilter::nbd
