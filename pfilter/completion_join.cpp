#include "pfilter/completion_join.hpp"

#include <algorithm>

namespace v2p::pfilter {

CompletionJoin::CompletionJoin(std::size_t max_entries)
    : max_entries_(std::max<std::size_t>(max_entries, 1)), index_(std::size_t{1} << index_bits_) {}

std::size_t CompletionJoin::home(std::uint64_t bio) const {
  return static_cast<std::size_t>((bio * 0x9E3779B97F4A7C15ULL) >> (64 - index_bits_));
}

std::size_t CompletionJoin::find(std::uint64_t bio) const {
  const std::size_t mask = index_.size() - 1;
  std::size_t s = home(bio);
  while (index_[s].bio != 0 && index_[s].bio != bio) s = (s + 1) & mask;
  return s;
}

// Backward-shift deletion: later members of the probe run move up, so lookups never need
// tombstones.
void CompletionJoin::erase_slot(std::size_t s) {
  const std::size_t mask = index_.size() - 1;
  std::size_t hole = s;
  for (std::size_t next = (hole + 1) & mask; index_[next].bio != 0; next = (next + 1) & mask) {
    const std::size_t h = home(index_[next].bio);
    // Movable into the hole unless its home lies cyclically in (hole, next].
    if (((next - h) & mask) >= ((next - hole) & mask)) {
      index_[hole] = index_[next];
      hole = next;
    }
  }
  index_[hole] = Slot{};
  --addresses_;
}

void CompletionJoin::grow_index() {
  std::vector<Slot> old(index_.size() * 2);
  old.swap(index_);
  ++index_bits_;
  for (const Slot& slot : old) {
    if (slot.bio != 0) index_[find(slot.bio)] = slot;
  }
}

std::uint32_t CompletionJoin::new_entry(const PhysEvent& e) {
  std::uint32_t i = free_;
  if (i != kNil) {
    free_ = pool_[i].next;
  } else {
    i = static_cast<std::uint32_t>(pool_.size());
    pool_.emplace_back();
  }
  pool_[i].event = e;
  pool_[i].next = kNil;
  ++size_;
  return i;
}

void CompletionJoin::free_entry(std::uint32_t i) {
  pool_[i].next = free_;
  free_ = i;
  --size_;
}

// At the bound: every address's uses queued long before the newest queue event lost their
// completions.
void CompletionJoin::drop_stale(std::uint64_t now_ns) {
  if (now_ns < kStaleAfterNs) return;
  const std::uint64_t limit = now_ns - kStaleAfterNs;
  for (std::size_t s = 0; s < index_.size();) {
    Slot& slot = index_[s];
    while (slot.bio != 0 && pool_[slot.head].event.ts_ns < limit) {
      const std::uint32_t i = slot.head;
      slot.head = pool_[i].next;
      free_entry(i);
      evicted_.fetch_add(1, std::memory_order_relaxed);
      if (slot.head == kNil) erase_slot(s);  // a later slot may have moved here: look again
    }
    if (index_[s].bio == 0 || pool_[index_[s].head].event.ts_ns >= limit) ++s;
  }
}

void CompletionJoin::queued(std::uint64_t bio, const PhysEvent& e) {
  if (size_ >= max_entries_) {
    drop_stale(e.ts_ns);
    if (size_ >= max_entries_) {
      evicted_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  if (2 * (addresses_ + 1) > index_.size()) grow_index();
  const std::uint32_t i = new_entry(e);
  Slot& slot = index_[find(bio)];
  if (slot.bio == 0) {
    slot = Slot{bio, i, i};
    ++addresses_;
    return;
  }
  // Sorted by queue time: batches of different CPUs can arrive in either order.
  if (pool_[slot.tail].event.ts_ns <= e.ts_ns) {
    pool_[slot.tail].next = i;
    slot.tail = i;
  } else if (e.ts_ns < pool_[slot.head].event.ts_ns) {
    pool_[i].next = slot.head;
    slot.head = i;
  } else {
    std::uint32_t at = slot.head;
    while (pool_[pool_[at].next].event.ts_ns <= e.ts_ns) at = pool_[at].next;
    pool_[i].next = pool_[at].next;
    pool_[at].next = i;
  }
}

bool CompletionJoin::completed(std::uint64_t bio, std::uint64_t ts_ns, std::int32_t error,
                               PhysEvent& out) {
  const std::size_t s = find(bio);
  Slot& slot = index_[s];
  if (slot.bio == 0) return false;
  // The latest use queued at or before the completion, and the entry before it.
  std::uint32_t use = kNil;
  std::uint32_t before = kNil;
  for (std::uint32_t prev = kNil, i = slot.head; i != kNil && pool_[i].event.ts_ns <= ts_ns;
       prev = i, i = pool_[i].next) {
    use = i;
    before = prev;
  }
  if (use == kNil) return false;
  out = pool_[use].event;
  out.latency_ns = ts_ns - out.ts_ns;
  out.ts_ns = ts_ns;
  out.kind = static_cast<std::uint8_t>(PhysEventKind::kComplete);
  out.error = error;
  // Unlink it; then the uses queued long before it lost their completions (class comment).
  const std::uint32_t after = pool_[use].next;
  if (before == kNil) {
    slot.head = after;
  } else {
    pool_[before].next = after;
  }
  if (slot.tail == use) slot.tail = before;
  const std::uint64_t queued_ns = out.ts_ns - out.latency_ns;
  free_entry(use);
  while (slot.head != kNil && pool_[slot.head].event.ts_ns + kStaleAfterNs < queued_ns) {
    const std::uint32_t i = slot.head;
    slot.head = pool_[i].next;
    if (slot.tail == i) slot.tail = kNil;
    free_entry(i);
    evicted_.fetch_add(1, std::memory_order_relaxed);
  }
  if (slot.head == kNil) erase_slot(s);
  return true;
}

}  // namespace v2p::pfilter
