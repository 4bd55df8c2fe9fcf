// How the vfilter's slot id travels to the block layer: in the 10 ioprio hint bits of the
// io_uring SQE (ioprio = class << 13 | hint << 3 | level). Both sides use these helpers.
#pragma once

#include <cstdint>

namespace v2p::tag {

inline constexpr unsigned kClassShift = 13;
inline constexpr unsigned kHintShift = 3;
inline constexpr std::uint16_t kHintMask = 0x3ff;
inline constexpr std::uint16_t kLevelMask = 0x7;
// Slot 0 means "untagged"; usable slots are 1..kMaxSlot per process.
inline constexpr std::uint16_t kMaxSlot = kHintMask;

constexpr std::uint16_t ioprio_for_slot(std::uint16_t slot) noexcept {
  // Class NONE and level 0: the I/O scheduler treats the request exactly as an untagged one.
  return static_cast<std::uint16_t>((slot & kHintMask) << kHintShift);
}

constexpr std::uint16_t slot_from_ioprio(std::uint16_t ioprio) noexcept {
  return static_cast<std::uint16_t>((ioprio >> kHintShift) & kHintMask);
}

}  // namespace v2p::tag
