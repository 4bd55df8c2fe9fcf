// A split virtqueue (virtio 1.x, section 2.7) in guest memory, as the device side walks it.
// The guest writes these rings while we read them: every descriptor field is read once into a
// local before it is checked and used, and a chain that loops, is longer than the ring, points
// outside guest memory or puts a readable buffer after a writable one is refused, not followed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "vfilter/vhost_user/guest_memory.hpp"

namespace v2p::vfilter::vhost_user {

// The split ring's layout (virtio 1.x 2.7; <linux/virtio_ring.h> does not compile as C++).
struct vring_desc {
  std::uint64_t addr;
  std::uint32_t len;
  std::uint16_t flags;
  std::uint16_t next;
};
struct vring_avail {
  std::uint16_t flags;
  std::uint16_t idx;
  std::uint16_t ring[];
};
struct vring_used_elem {
  std::uint32_t id;
  std::uint32_t len;
};
struct vring_used {
  std::uint16_t flags;
  std::uint16_t idx;
  vring_used_elem ring[];
};
inline constexpr std::uint16_t VRING_DESC_F_NEXT = 1;
inline constexpr std::uint16_t VRING_DESC_F_WRITE = 2;
inline constexpr std::uint16_t VRING_DESC_F_INDIRECT = 4;
inline constexpr std::uint16_t VRING_AVAIL_F_NO_INTERRUPT = 1;

struct Segment {
  std::byte* ptr = nullptr;
  std::uint32_t len = 0;
  bool writable = false;
};

class SplitQueue {
 public:
  static constexpr std::uint32_t kMaxSize = 32768;

  // Points the queue at its rings (frontend-virtual addresses); false when `num` is not a power
  // of two up to kMaxSize or a ring is not wholly inside guest memory.
  bool configure(const GuestMemory& mem, std::uint32_t num, std::uint64_t desc_uva,
                 std::uint64_t avail_uva, std::uint64_t used_uva) noexcept;
  [[nodiscard]] bool ready() const noexcept { return desc_ != nullptr; }
  void reset() noexcept { *this = SplitQueue(); }

  void set_last_avail(std::uint16_t idx) noexcept { last_avail_ = idx; }
  [[nodiscard]] std::uint16_t last_avail() const noexcept { return last_avail_; }

  enum class Pop { kEmpty, kOk, kBadChain, kBroken };
  // Takes the next available chain: its head and its buffers in `out` (`count` of them).
  // kBadChain: the chain is malformed (its head is valid and must still be returned used);
  // kBroken: the ring itself is inconsistent (a head out of range, an index that ran ahead).
  Pop pop(const GuestMemory& mem, std::uint16_t& head, std::span<Segment> out,
          std::size_t& count) noexcept;
  // Returns a chain to the guest with `written` bytes; the caller serialises calls.
  void push_used(std::uint16_t head, std::uint32_t written) noexcept;
  // After push_used: whether the guest wants an interrupt (VRING_AVAIL_F_NO_INTERRUPT clear).
  [[nodiscard]] bool should_notify() const noexcept;

 private:
  std::uint32_t num_ = 0;
  vring_desc* desc_ = nullptr;
  vring_avail* avail_ = nullptr;
  vring_used* used_ = nullptr;
  std::uint16_t last_avail_ = 0;
  std::uint16_t used_idx_ = 0;
};

}  // namespace v2p::vfilter::vhost_user
