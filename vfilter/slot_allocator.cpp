#include "vfilter/slot_allocator.hpp"

#include "v2p/tag.hpp"

namespace v2p::vfilter {

SlotAllocator& SlotAllocator::instance() {
  static SlotAllocator allocator(v2p::tag::kMaxSlot);
  return allocator;
}

SlotAllocator::SlotAllocator(std::uint16_t max_slot) : used_(std::size_t{max_slot} + 1, false) {
  free_.reserve(max_slot);
  for (std::uint16_t s = max_slot; s >= 1; --s) free_.push_back(s);
}

std::uint16_t SlotAllocator::take_locked() {
  const std::uint16_t s = free_.back();
  free_.pop_back();
  used_[s] = true;
  return s;
}

std::uint16_t SlotAllocator::acquire() {
  std::unique_lock lock(mu_);
  freed_.wait(lock, [this] { return !free_.empty(); });
  return take_locked();
}

std::uint16_t SlotAllocator::try_acquire() {
  std::lock_guard lock(mu_);
  return free_.empty() ? 0 : take_locked();
}

void SlotAllocator::release(std::uint16_t slot) noexcept {
  {
    std::lock_guard lock(mu_);
    if (slot == 0 || slot >= used_.size() || !used_[slot]) return;  // double release: ignore
    used_[slot] = false;
    free_.push_back(slot);
  }
  freed_.notify_one();
}

std::size_t SlotAllocator::in_use() const {
  std::lock_guard lock(mu_);
  return used_.size() - 1 - free_.size();
}

}  // namespace v2p::vfilter
