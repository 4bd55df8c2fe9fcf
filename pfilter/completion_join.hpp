// The join of a bio's queue event with its completion, in user space: the kernel sends each
// queue event with the bio's address and, later, completion records naming completed addresses
// (pfilter/blockio.h), so it keeps no per-bio state.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "v2p/records.hpp"

namespace v2p::pfilter {

// Queue events of bios in flight, by bio address. A bio's queue event reaches user space before
// its completion (queue events go to the ring at once; completions later, in per-CPU batches),
// but the kernel reuses a bio's memory as soon as it completes, so its address can be queued
// again before the earlier completion arrives: an address may have several entries, and a
// completion belongs to the latest one queued at or before its time.
//
// Open addressing: an address's entries lie in the kWindow slots from its hash (a bio reused
// while its completions wait in batches can have a dozen). The table starts small, so the
// entries the consumer touches at random per event stay in cache at ordinary I/O rates, and
// doubles when a window fills while the table is at least a quarter full, up to kMaxSlotBits.
// Otherwise (one address queued over and over, or the largest table) a full window gives up its
// oldest entry (a bio whose completion was never seen, e.g. lost with a full ring), counted as an
// unreported completion.
class CompletionJoin {
 public:
  static constexpr unsigned kMinSlotBits = 12;  // 4 096 entries, ≈ 360 KB
  static constexpr unsigned kMaxSlotBits = 18;  // 262 144 entries, ≈ 23 MB
  static constexpr unsigned kWindow = 32;

  explicit CompletionJoin(unsigned slot_bits = kMinSlotBits);

  void queued(std::uint64_t bio, const PhysEvent& e);

  // The completion event of bio: its queue event's fields, the completion's time, kind, error
  // and latency; false when no queue event of the address precedes ts_ns (a bio queued before
  // the probe attached, or by a process the filter excludes).
  bool completed(std::uint64_t bio, std::uint64_t ts_ns, std::int32_t error, PhysEvent& out);

  [[nodiscard]] std::uint64_t evicted() const { return evicted_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::size_t capacity() const { return keys_.size(); }

 private:
  [[nodiscard]] std::size_t home(std::uint64_t bio) const;
  [[nodiscard]] std::size_t slot(std::size_t home, std::size_t i) const {
    return (home + i) & (keys_.size() - 1);
  }
  // Puts the entry into a free slot of its window; false when the window is full.
  bool place(std::uint64_t bio, const PhysEvent& e);
  void grow();

  unsigned slot_bits_;
  std::size_t size_ = 0;  // entries in use

  std::vector<std::uint64_t> keys_;  // 0: free
  std::vector<PhysEvent> queued_;
  std::atomic<std::uint64_t> evicted_{0};  // read by other threads for statistics
};

}  // namespace v2p::pfilter
