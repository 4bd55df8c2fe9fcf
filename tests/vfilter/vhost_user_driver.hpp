// A vhost-user-blk frontend for tests and benchmarks, playing QEMU's part: guest memory in a
// memfd shared with the export, split vrings in it, kick and call eventfds, and virtio-blk
// requests built as a guest driver builds them. No guest, no QEMU: the export is tested,
// fuzzed and measured on its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "vfilter/vhost_user/virtqueue.hpp"
#include "vfilter/vhost_user/wire.hpp"

namespace v2p::vfilter::testing {

class VhostUserDriver {
 public:
  struct Options {
    unsigned queues = 1;
    unsigned queue_size = 128;
    std::size_t slot_bytes = 1 << 20;  // data buffer per request slot
  };
  // Connects and negotiates the whole device (features, config, memory, rings). Throws
  // std::runtime_error with what failed.
  VhostUserDriver(const std::filesystem::path& socket, Options options);
  explicit VhostUserDriver(const std::filesystem::path& socket)
      : VhostUserDriver(socket, Options{}) {}
  ~VhostUserDriver();
  VhostUserDriver(const VhostUserDriver&) = delete;
  VhostUserDriver& operator=(const VhostUserDriver&) = delete;

  [[nodiscard]] std::uint64_t capacity_bytes() const noexcept { return capacity_ * 512; }
  [[nodiscard]] std::uint64_t features() const noexcept { return features_; }
  [[nodiscard]] unsigned queues() const noexcept { return options_.queues; }
  [[nodiscard]] std::uint32_t max_slots() const noexcept { return slots_; }

  // Synchronous requests on queue `q`; each returns the virtio-blk status byte.
  std::uint8_t read(std::uint64_t offset, std::span<std::byte> out, unsigned q = 0);
  std::uint8_t write(std::uint64_t offset, std::span<const std::byte> data, unsigned q = 0);
  std::uint8_t flush(unsigned q = 0);
  std::uint8_t discard(std::uint64_t offset, std::uint64_t length, unsigned q = 0);
  std::uint8_t write_zeroes(std::uint64_t offset, std::uint64_t length, bool unmap, unsigned q = 0);
  std::uint8_t get_id(std::string& id, unsigned q = 0);
  // A request type the device does not know; returns the status.
  std::uint8_t raw_type(std::uint32_t type, unsigned q = 0);

  // Asynchronous I/O for benchmarks: submit a read or write of `len` bytes at `offset` into
  // request slot `slot` (< max_slots()), kick, and later reap completed slots.
  void submit(unsigned q, std::uint32_t slot, bool write, std::uint64_t offset, std::uint32_t len,
              bool kick = true);
  void kick(unsigned q);
  // Waits (up to timeout_ms) for completions; appends the finished slots. Returns their count.
  std::size_t reap(unsigned q, std::vector<std::uint32_t>& done, int timeout_ms);
  [[nodiscard]] std::uint8_t status(unsigned q, std::uint32_t slot) const;

  // Direct access for malformed-chain tests: the descriptor table, the avail ring and a way to
  // publish a head without building it here.
  vhost_user::vring_desc* descriptors(unsigned q);
  void publish_head(unsigned q, std::uint16_t head);
  std::uint64_t gpa_of(const std::byte* p) const;
  std::byte* slot_data(unsigned q, std::uint32_t slot);

  // One raw vhost-user message (for protocol tests): returns the reply payload if one came.
  std::vector<std::byte> message(std::uint32_t request, std::span<const std::byte> payload,
                                 bool want_reply, std::span<const int> fds = {});

 private:
  struct Ring;
  std::uint8_t sync(unsigned q, std::uint32_t type, std::uint64_t sector,
                    std::span<const std::byte> out_data, std::span<std::byte> in_data);
  void setup();

  Options options_;
  int sock_ = -1;
  int memfd_ = -1;
  std::byte* mem_ = nullptr;
  std::size_t mem_len_ = 0;
  std::uint64_t features_ = 0;
  std::uint64_t capacity_ = 0;
  std::uint32_t slots_ = 0;
  std::vector<Ring*> rings_;
};

}  // namespace v2p::vfilter::testing
