#include "vfilter/handshake.hpp"

#include <algorithm>
#include <string_view>

#include "vfilter/nbd_meta_context.hpp"
#include "vfilter/nbd_wire.hpp"

namespace v2p::vfilter {

using namespace nbd;

namespace {

constexpr std::size_t kOptionHeaderSize = 16;
constexpr std::uint32_t kPreferredBlock = 4096;

std::string_view as_chars(std::span<const std::byte> s) {
  return {reinterpret_cast<const char*>(s.data()), s.size()};
}

}  // namespace

std::uint16_t transmission_flags(const ExportInfo& e, ReplyStyle style) noexcept {
  // CACHE is always understood (a read whose data is dropped, docs/vfilter.md).
  std::uint16_t f = kTxHasFlags | kTxSendFlush | kTxSendCache;
  if (e.can_multi_conn) f |= kTxCanMultiConn;
  // A READ is always answered in one chunk, so DF costs nothing once chunks exist.
  if (style != ReplyStyle::kSimple) f |= kTxSendDf;
  if (e.read_only) return f | kTxReadOnly;
  if (e.can_fua) f |= kTxSendFua;
  if (e.can_trim) f |= kTxSendTrim;
  if (e.can_zero) f |= kTxSendWriteZeroes;
  return f;
}

Handshake::Handshake(std::vector<ExportInfo> exports, TlsMode tls)
    : exports_(std::move(exports)), tls_(tls) {
  put_be64(out_, kNbdMagic);
  put_be64(out_, kOptMagic);
  put_be16(out_, kFlagFixedNewstyle | kFlagNoZeroes);
}

std::vector<std::byte> Handshake::take_output() {
  std::vector<std::byte> out;
  out.swap(out_);
  return out;
}

std::span<const std::byte> Handshake::leftover() const noexcept {
  if (state_ != State::kTransmission) return {};
  return std::span<const std::byte>(in_).subspan(pos_);
}

void Handshake::feed(std::span<const std::byte> data) {
  if (state_ == State::kClosed) return;
  // Compact what was consumed so a long negotiation does not grow the buffer.
  if (pos_ > 0 && state_ != State::kTransmission) {
    in_.erase(in_.begin(), in_.begin() + static_cast<std::ptrdiff_t>(pos_));
    pos_ = 0;
  }
  in_.insert(in_.end(), data.begin(), data.end());
  step();
}

void Handshake::close(std::string reason) {
  state_ = State::kClosed;
  close_reason_ = std::move(reason);
}

void Handshake::step() {
  for (;;) {
    const std::size_t avail = in_.size() - pos_;
    const std::byte* p = in_.data() + pos_;
    switch (state_) {
      case State::kClientFlags: {
        if (avail < 4) return;
        const std::uint32_t flags = get_be32(p);
        pos_ += 4;
        // The spec requires closing on client flags we do not know.
        if ((flags & ~(kClientFixedNewstyle | kClientNoZeroes)) != 0) {
          return close("client sent unknown handshake flags");
        }
        no_zeroes_ = (flags & kClientNoZeroes) != 0;
        state_ = State::kOptionHeader;
        break;
      }
      case State::kOptionHeader: {
        if (avail < kOptionHeaderSize) return;
        if (get_be64(p) != kOptMagic) return close("bad option magic");
        option_ = get_be32(p + 8);
        option_len_ = get_be32(p + 12);
        pos_ += kOptionHeaderSize;
        if (++options_seen_ > kMaxOptions) return close("too many options");
        state_ = option_len_ > kMaxOptionData ? State::kSkipOption : State::kOptionData;
        break;
      }
      case State::kOptionData: {
        if (avail < option_len_) return;
        const auto data = std::span<const std::byte>(p, option_len_);
        state_ = State::kOptionHeader;
        // pos_ moves first: handle_option may end the handshake, and leftover() starts at pos_.
        pos_ += option_len_;
        handle_option(option_, data);
        if (state_ != State::kOptionHeader) return;
        break;
      }
      case State::kSkipOption: {
        // Discard an oversized option's data without buffering it, then refuse it.
        const std::size_t take = std::min<std::size_t>(avail, option_len_);
        pos_ += take;
        option_len_ -= static_cast<std::uint32_t>(take);
        if (option_len_ > 0) return;
        if (option_ == kOptExportName) return close("NBD_OPT_EXPORT_NAME name too long");
        reply_error(option_, kRepErrTooBig, "option data too large");
        state_ = State::kOptionHeader;
        break;
      }
      case State::kStartTls:
      case State::kTransmission:
      case State::kClosed:
        return;
    }
  }
}

void Handshake::reply(std::uint32_t option, std::uint32_t type, std::span<const std::byte> data) {
  put_be64(out_, kOptReplyMagic);
  put_be32(out_, option);
  put_be32(out_, type);
  put_be32(out_, static_cast<std::uint32_t>(data.size()));
  out_.insert(out_.end(), data.begin(), data.end());
}

void Handshake::reply_error(std::uint32_t option, std::uint32_t type, std::string_view message) {
  std::vector<std::byte> msg;
  put_bytes(msg, message);
  reply(option, type, msg);
}

std::optional<std::size_t> Handshake::find_export(std::string_view name) const {
  // The empty name is the protocol's "default export": the first one configured.
  if (name.empty() && !exports_.empty()) return 0;
  for (std::size_t i = 0; i < exports_.size(); ++i) {
    if (exports_[i].name == name) return i;
  }
  return std::nullopt;
}

void Handshake::tls_started() {
  if (state_ != State::kStartTls) return;
  if (pos_ != in_.size()) return close("client sent data between STARTTLS and its reply");
  tls_up_ = true;
  style_ = ReplyStyle::kSimple;
  meta_export_.reset();
  state_ = State::kOptionHeader;
}

void Handshake::handle_option(std::uint32_t option, std::span<const std::byte> data) {
  if (tls_ == TlsMode::kRequired && !tls_up_) {
    // FORCEDTLS: nothing about the exports is revealed before TLS.
    if (option == kOptExportName) return close("NBD_OPT_EXPORT_NAME before STARTTLS");
    if (option == kOptAbort) {
      reply(option, kRepAck, {});
      return close("client aborted the handshake");
    }
    if (option != kOptStartTls) return reply_error(option, kRepErrTlsReqd, "TLS is required");
  }
  switch (option) {
    case kOptExportName:
      return handle_export_name(data);
    case kOptAbort:
      reply(option, kRepAck, {});
      return close("client aborted the handshake");
    case kOptList: {
      if (!data.empty()) return reply_error(option, kRepErrInvalid, "NBD_OPT_LIST takes no data");
      for (const auto& e : exports_) {
        std::vector<std::byte> d;
        put_be32(d, static_cast<std::uint32_t>(e.name.size()));
        put_bytes(d, e.name);
        put_bytes(d, e.description);
        reply(option, kRepServer, d);
      }
      return reply(option, kRepAck, {});
    }
    case kOptInfo:
    case kOptGo:
      return handle_info_or_go(option, data);
    case kOptStartTls:
      if (tls_ == TlsMode::kNone) return reply_error(option, kRepErrUnsup, "TLS is not configured");
      if (tls_up_) return reply_error(option, kRepErrInvalid, "TLS is already running");
      if (!data.empty()) return reply_error(option, kRepErrInvalid, "STARTTLS takes no data");
      reply(option, kRepAck, {});
      state_ = State::kStartTls;
      return;
    case kOptStructuredReply:
      if (!data.empty()) return reply_error(option, kRepErrInvalid, "option takes no data");
      // Extended headers, once agreed, take precedence.
      if (style_ == ReplyStyle::kSimple) style_ = ReplyStyle::kStructured;
      return reply(option, kRepAck, {});
    case kOptListMetaContext:
    case kOptSetMetaContext:
      return handle_meta_context(option, data);
    default:
      return reply_error(option, kRepErrUnsup, "option not supported by the v2p vfilter");
  }
}

void Handshake::handle_export_name(std::span<const std::byte> data) {
  const auto idx = find_export(as_chars(data));
  // NBD_OPT_EXPORT_NAME has no error reply: the spec's answer to an unknown name is to close.
  if (!idx) return close("unknown export requested with NBD_OPT_EXPORT_NAME");
  const ExportInfo& e = exports_[*idx];
  put_be64(out_, e.size);
  put_be16(out_, transmission_flags(e, style_));
  if (!no_zeroes_) out_.insert(out_.end(), 124, std::byte{0});
  enter_transmission(*idx);
}

void Handshake::enter_transmission(std::size_t idx) {
  selected_ = idx;
  // Contexts count only for the export they were selected on (the spec's rule for BLOCK_STATUS).
  base_allocation_ = meta_export_ == idx;
  state_ = State::kTransmission;
}

void Handshake::handle_meta_context(std::uint32_t option, std::span<const std::byte> data) {
  const bool listing = option == kOptListMetaContext;
  // SET replaces the selection even when it fails.
  if (!listing) meta_export_.reset();
  if (style_ == ReplyStyle::kSimple) {
    return reply_error(option, kRepErrInvalid, "negotiate structured replies first");
  }
  const auto req = parse_meta_context_request(data);
  if (!req) return reply_error(option, kRepErrInvalid, "malformed meta context request");
  const auto idx = find_export(req->export_name);
  if (!idx) return reply_error(option, kRepErrUnknown, "no such export");
  bool selected = listing && req->queries.empty();  // an empty list asks for everything
  for (const auto q : req->queries)
    selected = selected || query_selects_base_allocation(q, listing);
  if (selected) {
    std::vector<std::byte> d;
    put_be32(d, listing ? 0 : kBaseAllocationId);
    put_bytes(d, kBaseAllocation);
    reply(option, kRepMetaContext, d);
    if (!listing) meta_export_ = idx;
  }
  reply(option, kRepAck, {});
}

void Handshake::handle_info_or_go(std::uint32_t option, std::span<const std::byte> data) {
  // u32 name length, name, u16 number of requests, u16 each.
  if (data.size() < 6) return reply_error(option, kRepErrInvalid, "option data too short");
  const std::uint32_t name_len = get_be32(data.data());
  if (name_len > data.size() - 6)
    return reply_error(option, kRepErrInvalid, "name length too large");
  const auto name = as_chars(data.subspan(4, name_len));
  const std::uint16_t nreq = get_be16(data.data() + 4 + name_len);
  if (data.size() != 6 + std::size_t{name_len} + 2 * std::size_t{nreq}) {
    return reply_error(option, kRepErrInvalid, "information request count does not match length");
  }
  bool want_name = false;
  bool want_description = false;
  bool want_block_size = false;
  for (std::uint16_t i = 0; i < nreq; ++i) {
    switch (get_be16(data.data() + 6 + name_len + 2 * std::size_t{i})) {
      case kInfoName:
        want_name = true;
        break;
      case kInfoDescription:
        want_description = true;
        break;
      case kInfoBlockSize:
        want_block_size = true;
        break;
      default:
        break;  // unknown requests are ignored, as the spec asks
    }
  }
  const auto idx = find_export(name);
  if (!idx) return reply_error(option, kRepErrUnknown, "no such export");
  const ExportInfo& e = exports_[*idx];

  std::vector<std::byte> d;
  put_be16(d, kInfoExport);
  put_be64(d, e.size);
  put_be16(d, transmission_flags(e, style_));
  reply(option, kRepInfo, d);
  // Block sizes are always sent: a server with constraints SHOULD advertise them.
  d.clear();
  put_be16(d, kInfoBlockSize);
  put_be32(d, e.min_block);
  put_be32(d, std::max(kPreferredBlock, e.min_block));
  put_be32(d, kMaxPayload);
  reply(option, kRepInfo, d);
  if (want_name) {
    d.clear();
    put_be16(d, kInfoName);
    put_bytes(d, e.name);
    reply(option, kRepInfo, d);
  }
  if (want_description && !e.description.empty()) {
    d.clear();
    put_be16(d, kInfoDescription);
    put_bytes(d, e.description);
    reply(option, kRepInfo, d);
  }
  reply(option, kRepAck, {});
  if (option == kOptGo) {
    block_size_agreed_ = want_block_size;
    enter_transmission(*idx);
  }
}

}  // namespace v2p::vfilter
