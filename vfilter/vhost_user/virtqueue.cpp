#include "vfilter/vhost_user/virtqueue.hpp"

#include <atomic>
#include <bit>

namespace v2p::vfilter::vhost_user {

static_assert(std::endian::native == std::endian::little, "virtio 1.x rings are little-endian");

bool SplitQueue::configure(const GuestMemory& mem, std::uint32_t num, std::uint64_t desc_uva,
                           std::uint64_t avail_uva, std::uint64_t used_uva) noexcept {
  reset();
  if (num == 0 || num > kMaxSize || (num & (num - 1)) != 0) return false;
  // Sizes with the event-index fields, which we never use but the layout reserves.
  auto* desc = mem.uva(desc_uva, std::uint64_t{num} * sizeof(vring_desc));
  auto* avail = mem.uva(avail_uva, 4 + 2 * std::uint64_t{num} + 2);
  auto* used = mem.uva(used_uva, 4 + 8 * std::uint64_t{num} + 2);
  if (desc == nullptr || avail == nullptr || used == nullptr) return false;
  if (reinterpret_cast<std::uintptr_t>(desc) % 16 != 0 ||
      reinterpret_cast<std::uintptr_t>(avail) % 2 != 0 ||
      reinterpret_cast<std::uintptr_t>(used) % 4 != 0) {
    return false;
  }
  num_ = num;
  desc_ = reinterpret_cast<vring_desc*>(desc);
  avail_ = reinterpret_cast<vring_avail*>(avail);
  used_ = reinterpret_cast<vring_used*>(used);
  used_idx_ = std::atomic_ref(used_->idx).load(std::memory_order_acquire);
  return true;
}

SplitQueue::Pop SplitQueue::pop(const GuestMemory& mem, std::uint16_t& head, std::span<Segment> out,
                                std::size_t& count) noexcept {
  count = 0;
  if (!ready()) return Pop::kEmpty;
  const std::uint16_t avail_idx = std::atomic_ref(avail_->idx).load(std::memory_order_acquire);
  if (avail_idx == last_avail_) return Pop::kEmpty;
  // The guest cannot have more chains outstanding than the ring has entries.
  if (static_cast<std::uint16_t>(avail_idx - last_avail_) > num_) return Pop::kBroken;
  head = std::atomic_ref(avail_->ring[last_avail_ % num_]).load(std::memory_order_relaxed);
  if (head >= num_) return Pop::kBroken;
  ++last_avail_;
  std::uint16_t i = head;
  bool seen_writable = false;
  // A chain visits each descriptor at most once, so more than num_ steps means a loop.
  for (std::uint32_t steps = 0;; ++steps) {
    if (steps >= num_ || count >= out.size()) return Pop::kBadChain;
    const vring_desc d{std::atomic_ref(desc_[i].addr).load(std::memory_order_relaxed),
                       std::atomic_ref(desc_[i].len).load(std::memory_order_relaxed),
                       std::atomic_ref(desc_[i].flags).load(std::memory_order_relaxed),
                       std::atomic_ref(desc_[i].next).load(std::memory_order_relaxed)};
    if (d.flags & VRING_DESC_F_INDIRECT) return Pop::kBadChain;  // not negotiated
    const bool writable = (d.flags & VRING_DESC_F_WRITE) != 0;
    if (seen_writable && !writable) return Pop::kBadChain;  // readable after writable
    seen_writable = seen_writable || writable;
    if (d.len > 0) {
      std::byte* p = mem.gpa(d.addr, d.len);
      if (p == nullptr) return Pop::kBadChain;
      out[count++] = {p, d.len, writable};
    }
    if (!(d.flags & VRING_DESC_F_NEXT)) break;
    if (d.next >= num_) return Pop::kBadChain;
    i = d.next;
  }
  return Pop::kOk;
}

void SplitQueue::push_used(std::uint16_t head, std::uint32_t written) noexcept {
  vring_used_elem& e = used_->ring[used_idx_ % num_];
  std::atomic_ref(e.id).store(head, std::memory_order_relaxed);
  std::atomic_ref(e.len).store(written, std::memory_order_relaxed);
  ++used_idx_;
  // The element must be visible before the index that publishes it.
  std::atomic_ref(used_->idx).store(used_idx_, std::memory_order_release);
}

bool SplitQueue::should_notify() const noexcept {
  // Order the used index store before reading the guest's flags (the guest does the reverse).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return (std::atomic_ref(avail_->flags).load(std::memory_order_relaxed) &
          VRING_AVAIL_F_NO_INTERRUPT) == 0;
}

}  // namespace v2p::vfilter::vhost_user
