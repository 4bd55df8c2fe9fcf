// Process-wide allocator of tag slots 1..v2p::tag::kMaxSlot. The probe identifies a host I/O by
// (tgid, slot), so a slot must never be handed out twice while in flight anywhere in the process:
// every server, connection and thread shares the one instance.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <vector>

namespace v2p::vfilter {

class SlotAllocator {
 public:
  static SlotAllocator& instance();

  // Blocks until a slot is free: a host I/O is never submitted untagged for lack of slots.
  std::uint16_t acquire();
  // A free slot, or 0 when all are in flight.
  std::uint16_t try_acquire();
  void release(std::uint16_t slot) noexcept;
  [[nodiscard]] std::size_t in_use() const;

  explicit SlotAllocator(std::uint16_t max_slot);

 private:
  std::uint16_t take_locked();

  mutable std::mutex mu_;
  std::condition_variable freed_;
  std::vector<std::uint16_t> free_;  // LIFO keeps recently used slots warm; order is irrelevant
  std::vector<bool> used_;
};

// RAII hold on one slot.
class SlotLease {
 public:
  SlotLease() = default;
  explicit SlotLease(SlotAllocator& a) : alloc_(&a), slot_(a.acquire()) {}
  ~SlotLease() { reset(); }
  SlotLease(SlotLease&& o) noexcept : alloc_(o.alloc_), slot_(o.slot_) { o.slot_ = 0; }
  SlotLease& operator=(SlotLease&& o) noexcept {
    if (this != &o) {
      reset();
      alloc_ = o.alloc_;
      slot_ = o.slot_;
      o.slot_ = 0;
    }
    return *this;
  }
  [[nodiscard]] std::uint16_t slot() const noexcept { return slot_; }
  void reset() noexcept {
    if (slot_ != 0) alloc_->release(slot_);
    slot_ = 0;
  }

 private:
  SlotAllocator* alloc_ = nullptr;
  std::uint16_t slot_ = 0;
};

}  // namespace v2p::vfilter
