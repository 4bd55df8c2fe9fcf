// Transmission-phase request headers: parsing and validation over bytes, apart from the sockets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace v2p::vfilter {

struct RequestHeader {
  std::uint16_t flags = 0;
  std::uint16_t type = 0;
  std::uint64_t cookie = 0;
  std::uint64_t offset = 0;
  std::uint32_t length = 0;
};

// Parses a 28-byte request header; nullopt when the buffer is short or the magic is wrong (the
// stream cannot be resynchronised, so the caller closes the connection).
std::optional<RequestHeader> parse_request(std::span<const std::byte> bytes) noexcept;

// What the export allows, as agreed in the handshake.
struct ExportLimits {
  std::uint64_t size = 0;
  bool read_only = false;
  // Alignment the client promised (NBD_INFO_BLOCK_SIZE requested in NBD_OPT_GO); 1 otherwise.
  std::uint32_t agreed_min_block = 1;
  bool structured = false;    // structured replies or extended headers: READ may carry DF
  bool block_status = false;  // base:allocation selected: BLOCK_STATUS is allowed
};

enum class Action {
  kRead,
  kWrite,
  kFlush,
  kTrim,
  kWriteZeroes,
  kCache,        // a read whose data is dropped: warms whatever caches the stack has
  kBlockStatus,  // base:allocation extents
  kDisconnect,
  kReplyError
};

struct Validated {
  Action action = Action::kReplyError;
  std::uint32_t error = 0;  // NBD error to reply with when action == kReplyError
  // Bytes of payload that follow the header on the wire and must be consumed (writes), even
  // when the request is refused, so the stream stays in sync.
  std::uint32_t payload = 0;
};

// Decides what to do with a request; never fails, never touches memory beyond its arguments.
Validated validate_request(const RequestHeader& r, const ExportLimits& limits) noexcept;

// Simple reply header (16 bytes).
std::vector<std::byte> encode_simple_reply(std::uint64_t cookie, std::uint32_t error);

}  // namespace v2p::vfilter
