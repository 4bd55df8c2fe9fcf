// The dm-v2p target's ring (kmod/, /dev/v2p-dm) as a physical-layer event source: the records
// the target writes for each bio it maps are PhysEvents byte for byte (queue events of the dm
// device), so the correlator joins them exactly as it joins the eBPF probe's. Use it where eBPF
// is locked down, or beside the target's per-VM limits (docs/dm-target.md).
//
// No libbpf, no fmt: the dm test links it into the static program it runs in its guest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <vector>

#include "v2p/records.hpp"

namespace v2p::pfilter {

inline constexpr const char* kDmRingPath = "/dev/v2p-dm";

struct DmRingStats {
  std::uint64_t produced = 0;   // records the target wrote into the ring since the module loaded
  std::uint64_t dropped = 0;    // records dropped because the ring was full (never blocks I/O)
  std::uint64_t delivered = 0;  // records read by any reader
  std::uint64_t capacity = 0;   // records the ring holds before it drops
};

class DmRingSource {
 public:
  // Opens the ring (or a file of records, for replay and tests). Throws v2p::Error with the
  // reason: the module not loaded (no such device), not root.
  explicit DmRingSource(const std::filesystem::path& path = kDmRingPath);
  ~DmRingSource();
  DmRingSource(const DmRingSource&) = delete;
  DmRingSource& operator=(const DmRingSource&) = delete;

  // Waits up to timeout_ms (negative: until something arrives; 0: no wait) and delivers every
  // record available now; returns how many. The target wakes a sleeping reader only once
  // `wakeup_records` (module parameter, 64) wait, so a reader that wants sparse records soon
  // passes a timeout. An exception from on_event propagates; the records after it are lost.
  std::size_t poll(int timeout_ms, const std::function<void(const PhysEvent&)>& on_event);

  // The ring's counters (V2P_DM_IOC_RING_STATS). Throws v2p::Error on something that is not the
  // target's device.
  [[nodiscard]] DmRingStats stats() const;
  // Records the target dropped since it was loaded: what the correlator's on_lost wants.
  [[nodiscard]] std::uint64_t lost_events() const { return stats().dropped; }
  [[nodiscard]] int fd() const noexcept { return fd_; }

 private:
  int fd_ = -1;
  std::vector<PhysEvent> buffer_;
  std::size_t partial_ = 0;  // bytes of an incomplete record at the front of buffer_ (files)
};

}  // namespace v2p::pfilter
