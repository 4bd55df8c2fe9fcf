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

inline constexpr std::uint16_t kClassBestEffort = 2;
// What the kernel gives a task that never set an I/O priority (best effort, level 4 = nice 0).
inline constexpr std::uint16_t kDefaultBase =
    static_cast<std::uint16_t>(kClassBestEffort << kClassShift | 4);

// The class must not be NONE: submit_bio() replaces a class-NONE ioprio, hint bits included,
// with the task's priority (measured on 6.18: a hint sent with class NONE arrived as 0x4004).
// With `base` equal to the priority the task would get anyway, the I/O scheduler sees no change.
constexpr std::uint16_t ioprio_for_slot(std::uint16_t slot,
                                        std::uint16_t base = kDefaultBase) noexcept {
  const auto without_hint = static_cast<std::uint16_t>(base & ~(kHintMask << kHintShift));
  return static_cast<std::uint16_t>(without_hint | ((slot & kHintMask) << kHintShift));
}

constexpr std::uint16_t slot_from_ioprio(std::uint16_t ioprio) noexcept {
  return static_cast<std::uint16_t>((ioprio >> kHintShift) & kHintMask);
}

}  // namespace v2p::tag
