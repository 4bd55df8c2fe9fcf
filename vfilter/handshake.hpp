// The NBD fixed-newstyle handshake as a byte-in, byte-out state machine. It never touches a
// socket: the connection feeds it what it received and sends what it produced, so the whole
// negotiation is unit-testable and fuzzable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vfilter/nbd_structured_reply.hpp"

namespace v2p::vfilter {

// What the handshake needs to know about one export.
struct ExportInfo {
  std::string name;
  std::string description;
  std::uint64_t size = 0;
  bool read_only = false;
  std::uint32_t min_block = 1;  // 512 (or the device's) when served with O_DIRECT
  // What the export's stack offers (BlockBackend::can_*); the image path offers everything.
  bool can_fua = true;
  bool can_trim = true;
  bool can_zero = true;
  bool can_multi_conn = true;
};

// Transmission flags advertised for an export; DF only once structured replies are agreed.
std::uint16_t transmission_flags(const ExportInfo& e,
                                 ReplyStyle style = ReplyStyle::kSimple) noexcept;

// How the server treats TLS (NBD_OPT_STARTTLS), as `v2p serve --tls-creds` sets it.
enum class TlsMode : std::uint8_t {
  kNone,     // STARTTLS is refused as unsupported
  kRequired  // FORCEDTLS: every other option is refused with NBD_REP_ERR_TLS_REQD until TLS runs
};

class Handshake {
 public:
  enum class State {
    kClientFlags,
    kOptionHeader,
    kOptionData,
    kSkipOption,
    kStartTls,  // STARTTLS was acknowledged: the caller runs the TLS handshake, then tls_started()
    kTransmission,
    kClosed
  };

  // Limits that keep a hostile client from making the server buffer or loop without bound.
  static constexpr std::uint32_t kMaxOptionData = 64 * 1024;
  static constexpr std::uint32_t kMaxOptions = 1024;

  explicit Handshake(std::vector<ExportInfo> exports, TlsMode tls = TlsMode::kNone);

  // Appends received bytes and advances as far as they allow. Bytes past the end of the
  // handshake are kept (see leftover()) for the transmission phase.
  void feed(std::span<const std::byte> data);
  // Bytes to send to the client (the greeting first); clears the internal buffer.
  std::vector<std::byte> take_output();

  [[nodiscard]] State state() const noexcept { return state_; }
  [[nodiscard]] bool done() const noexcept { return state_ == State::kTransmission; }
  [[nodiscard]] bool closed() const noexcept { return state_ == State::kClosed; }
  // Why the handshake closed (for the server log), empty otherwise.
  [[nodiscard]] const std::string& close_reason() const noexcept { return close_reason_; }
  // Index into the exports of the one selected by NBD_OPT_GO / NBD_OPT_EXPORT_NAME.
  [[nodiscard]] std::optional<std::size_t> selected() const noexcept { return selected_; }
  // True when the client asked for NBD_INFO_BLOCK_SIZE in NBD_OPT_GO and so must honour it.
  [[nodiscard]] bool block_size_agreed() const noexcept { return block_size_agreed_; }
  // Bytes received after the handshake ended.
  [[nodiscard]] std::span<const std::byte> leftover() const noexcept;
  // True once STARTTLS was acknowledged and the TLS session is not up yet.
  [[nodiscard]] bool wants_tls() const noexcept { return state_ == State::kStartTls; }
  // The TLS session is up: negotiation goes on inside it, from a clean slate (the spec makes
  // the client renegotiate everything agreed before STARTTLS). Closes when the client sent
  // bytes after STARTTLS before seeing its acknowledgement (they would be TLS records).
  void tls_started();
  // The reply framing the client agreed to (structured replies, extended headers).
  [[nodiscard]] ReplyStyle reply_style() const noexcept { return style_; }
  // True when base:allocation is selected for the export that entered transmission.
  [[nodiscard]] bool base_allocation() const noexcept { return base_allocation_; }

 private:
  void step();
  void handle_option(std::uint32_t option, std::span<const std::byte> data);
  void handle_info_or_go(std::uint32_t option, std::span<const std::byte> data);
  void handle_export_name(std::span<const std::byte> data);
  void handle_meta_context(std::uint32_t option, std::span<const std::byte> data);
  void enter_transmission(std::size_t idx);
  void reply(std::uint32_t option, std::uint32_t type, std::span<const std::byte> data);
  void reply_error(std::uint32_t option, std::uint32_t type, std::string_view message);
  void close(std::string reason);
  [[nodiscard]] std::optional<std::size_t> find_export(std::string_view name) const;

  std::vector<ExportInfo> exports_;
  State state_ = State::kClientFlags;
  std::vector<std::byte> in_;
  std::size_t pos_ = 0;
  std::vector<std::byte> out_;
  bool no_zeroes_ = false;
  std::uint32_t option_ = 0;
  std::uint32_t option_len_ = 0;
  std::uint32_t options_seen_ = 0;
  std::optional<std::size_t> selected_;
  bool block_size_agreed_ = false;
  std::string close_reason_;
  TlsMode tls_ = TlsMode::kNone;
  bool tls_up_ = false;
  ReplyStyle style_ = ReplyStyle::kSimple;
  // The export the last SET_META_CONTEXT selected base:allocation for.
  std::optional<std::size_t> meta_export_;
  bool base_allocation_ = false;
};

}  // namespace v2p::vfilter
