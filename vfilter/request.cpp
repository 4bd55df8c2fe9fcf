#include "vfilter/request.hpp"

#include <cerrno>

#include "vfilter/nbd_wire.hpp"

namespace v2p::vfilter {

using namespace nbd;

std::uint32_t nbd::errno_to_nbd(int err) noexcept {
  switch (err) {
    case EPERM:
    case EROFS:
      return kEperm;
    case ENOMEM:
      return kEnomem;
    case EINVAL:
      return kEinval;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return kEnospc;
    case ESHUTDOWN:
      return kEshutdown;
    default:
      return kEio;
  }
}

std::optional<RequestHeader> parse_request(std::span<const std::byte> b) noexcept {
  if (b.size() < kRequestSize || get_be32(b.data()) != kRequestMagic) return std::nullopt;
  RequestHeader r;
  r.flags = get_be16(b.data() + 4);
  r.type = get_be16(b.data() + 6);
  r.cookie = get_be64(b.data() + 8);
  r.offset = get_be64(b.data() + 16);
  r.length = get_be32(b.data() + 24);
  return r;
}

namespace {

Validated refuse(std::uint32_t error, std::uint32_t payload = 0) {
  return {Action::kReplyError, error, payload};
}

}  // namespace

Validated validate_request(const RequestHeader& r, const ExportLimits& limits) noexcept {
  const bool is_write = r.type == kCmdWrite;
  const std::uint32_t payload = is_write ? r.length : 0;
  std::uint16_t allowed_flags = 0;
  Action action{};
  switch (r.type) {
    case kCmdRead:
      action = Action::kRead;
      if (limits.structured) allowed_flags = kCmdFlagDf;
      break;
    case kCmdCache:
      action = Action::kCache;
      break;
    case kCmdBlockStatus:
      if (!limits.block_status) return refuse(kEinval);
      action = Action::kBlockStatus;
      allowed_flags = kCmdFlagReqOne;
      break;
    case kCmdWrite:
      action = Action::kWrite;
      allowed_flags = kCmdFlagFua;
      break;
    case kCmdFlush:
      action = Action::kFlush;
      break;
    case kCmdTrim:
      action = Action::kTrim;
      allowed_flags = kCmdFlagFua;
      break;
    case kCmdWriteZeroes:
      action = Action::kWriteZeroes;
      allowed_flags = kCmdFlagFua | kCmdFlagNoHole;
      break;
    case kCmdDisc:
      return {Action::kDisconnect, 0, 0};
    default:
      return refuse(kEinval);  // unknown commands carry no payload
  }
  if ((r.flags & ~allowed_flags) != 0) return refuse(kEinval, payload);
  if (action == Action::kFlush) return {action, 0, 0};

  const bool modifies =
      action != Action::kRead && action != Action::kCache && action != Action::kBlockStatus;
  if (modifies && limits.read_only) return refuse(kEperm, payload);
  // Only commands whose payload the client controls are bounded by the maximum payload size.
  if ((action == Action::kRead || is_write) && r.length > kMaxPayload) {
    return refuse(kEinval, payload);
  }
  const std::uint64_t end = r.offset + r.length;
  if (end < r.offset) return refuse(kEinval, payload);  // offset + length overflows
  // A zero-length status query has no answer (the spec leaves it unspecified; refuse it).
  if (action == Action::kBlockStatus && r.length == 0) return refuse(kEinval);
  if (end > limits.size) {
    const bool writes_data = is_write || action == Action::kWriteZeroes;
    return refuse(writes_data ? kEnospc : kEinval, payload);
  }
  const std::uint32_t align = limits.agreed_min_block;
  if (align > 1 && (r.offset % align != 0 || r.length % align != 0)) {
    return refuse(kEinval, payload);
  }
  return {action, 0, payload};
}

std::vector<std::byte> encode_simple_reply(std::uint64_t cookie, std::uint32_t error) {
  std::vector<std::byte> out;
  out.reserve(kSimpleReplySize);
  put_be32(out, kSimpleReplyMagic);
  put_be32(out, error);
  put_be64(out, cookie);
  return out;
}

}  // namespace v2p::vfilter
