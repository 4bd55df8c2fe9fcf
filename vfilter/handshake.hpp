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

// Transmission flags advertised for an export.
std::uint16_t transmission_flags(const ExportInfo& e) noexcept;

class Handshake {
 public:
  enum class State {
    kClientFlags,
    kOptionHeader,
    kOptionData,
    kSkipOption,
    kTransmission,
    kClosed
  };

  // Limits that keep a hostile client from making the server buffer or loop without bound.
  static constexpr std::uint32_t kMaxOptionData = 64 * 1024;
  static constexpr std::uint32_t kMaxOptions = 1024;

  explicit Handshake(std::vector<ExportInfo> exports);

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

 private:
  void step();
  void handle_option(std::uint32_t option, std::span<const std::byte> data);
  void handle_info_or_go(std::uint32_t option, std::span<const std::byte> data);
  void handle_export_name(std::span<const std::byte> data);
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
};

}  // namespace v2p::vfilter
