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

// Queue events of bios in flight, by bio address. The kernel reuses a bio's memory as soon as it
// completes, so one address has a queue event per use, and its uses never overlap in time: a
// completion belongs to the latest use queued at or before it. Both kinds of event reach user
// space late and out of order (per-CPU batches), so the probe joins a completion only once every
// queue event older than it has arrived (pfilter/probe.cpp); an older use's completion may still
// come after a newer one's. An entry queued more than kStaleAfterNs before a use of the same
// address that completed lost its completion (a batch waits milliseconds, not seconds): it is
// dropped then, and counted.
//
// Layout, for a consumer that handles millions of events a second: an open-addressing index
// (linear probing, no tombstones) from address to a chain of its uses sorted by queue time,
// usually one or two long, in a pool of entries reused through a free list; the index doubles
// at half load. At kMaxEntries (never reached by bios really in flight, only by queue events
// whose completions were lost) the long-stale entries are dropped, and if none is, the new one
// is not kept; both counted.
class CompletionJoin {
 public:
  static constexpr std::size_t kMaxEntries = 262144;  // ≈ 23 MB
  static constexpr std::uint64_t kStaleAfterNs = 10'000'000'000;

  explicit CompletionJoin(std::size_t max_entries = kMaxEntries);

  void queued(std::uint64_t bio, const PhysEvent& e);

  // The completion event of bio: its queue event's fields, the completion's time, kind, error
  // and latency; false when no queue event of the address precedes ts_ns (a bio queued before
  // the probe attached, by a process the filter excludes, or the front part of a split).
  bool completed(std::uint64_t bio, std::uint64_t ts_ns, std::int32_t error, PhysEvent& out);

  // Queue events whose completion will not be reported (see the class comment).
  [[nodiscard]] std::uint64_t evicted() const { return evicted_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::size_t size() const { return size_; }

 private:
  static constexpr std::uint32_t kNil = ~std::uint32_t{0};
  struct Entry {
    PhysEvent event;
    std::uint32_t next = kNil;  // the address's next use, or the next free entry
  };
  struct Slot {
    std::uint64_t bio = 0;  // 0: free
    std::uint32_t head = kNil;
    std::uint32_t tail = kNil;
  };

  [[nodiscard]] std::size_t home(std::uint64_t bio) const;
  [[nodiscard]] std::size_t find(std::uint64_t bio) const;  // its slot, or the free slot to use
  void erase_slot(std::size_t s);
  void grow_index();
  std::uint32_t new_entry(const PhysEvent& e);
  void free_entry(std::uint32_t i);
  void drop_stale(std::uint64_t now_ns);

  std::size_t max_entries_;
  std::size_t size_ = 0;
  std::size_t addresses_ = 0;
  unsigned index_bits_ = 10;
  std::vector<Slot> index_;
  std::vector<Entry> pool_;
  std::uint32_t free_ = kNil;
  std::atomic<std::uint64_t> evicted_{0};  // read by other threads for statistics
};

}  // namespace v2p::pfilter
