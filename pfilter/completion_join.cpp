#include "pfilter/completion_join.hpp"

namespace v2p::pfilter {

CompletionJoin::CompletionJoin(unsigned slot_bits)
    : slot_bits_(slot_bits),
      keys_(std::size_t{1} << slot_bits, 0),
      queued_(std::size_t{1} << slot_bits) {}

std::size_t CompletionJoin::home(std::uint64_t bio) const {
  return static_cast<std::size_t>((bio * 0x9E3779B97F4A7C15ULL) >> (64 - slot_bits_));
}

bool CompletionJoin::place(std::uint64_t bio, const PhysEvent& e) {
  const std::size_t h = home(bio);
  for (std::size_t i = 0; i < kWindow; ++i) {
    const std::size_t s = slot(h, i);
    if (keys_[s] != 0) continue;
    keys_[s] = bio;
    queued_[s] = e;
    ++size_;
    return true;
  }
  return false;
}

void CompletionJoin::grow() {
  std::vector<std::uint64_t> keys(keys_.size() * 2, 0);
  std::vector<PhysEvent> queued(queued_.size() * 2);
  keys.swap(keys_);
  queued.swap(queued_);
  ++slot_bits_;
  size_ = 0;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    // Half the load it had: a full window here is all but impossible; drop the entry if so.
    if (keys[i] != 0 && !place(keys[i], queued[i])) {
      evicted_.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

void CompletionJoin::queued(std::uint64_t bio, const PhysEvent& e) {
  while (!place(bio, e)) {
    if (slot_bits_ < kMaxSlotBits && size_ >= keys_.size() / 4) {
      grow();
      continue;
    }
    // Growing would not help (few entries: this address fills its window) or is not allowed:
    // give up the window's oldest entry.
    const std::size_t h = home(bio);
    std::size_t oldest = h;
    for (std::size_t i = 0; i < kWindow; ++i) {
      const std::size_t s = slot(h, i);
      if (queued_[s].ts_ns < queued_[oldest].ts_ns) oldest = s;
    }
    evicted_.fetch_add(1, std::memory_order_relaxed);
    keys_[oldest] = bio;
    queued_[oldest] = e;
    return;
  }
}

bool CompletionJoin::completed(std::uint64_t bio, std::uint64_t ts_ns, std::int32_t error,
                               PhysEvent& out) {
  const std::size_t h = home(bio);
  constexpr std::size_t kNone = ~std::size_t{0};
  std::size_t found = kNone;
  for (std::size_t i = 0; i < kWindow; ++i) {
    const std::size_t s = slot(h, i);
    if (keys_[s] != bio || queued_[s].ts_ns > ts_ns) continue;
    if (found == kNone || queued_[s].ts_ns > queued_[found].ts_ns) found = s;
  }
  if (found == kNone) return false;
  keys_[found] = 0;
  --size_;
  out = queued_[found];
  out.latency_ns = ts_ns - out.ts_ns;
  out.ts_ns = ts_ns;
  out.kind = static_cast<std::uint8_t>(PhysEventKind::kComplete);
  out.error = error;
  return true;
}

}  // namespace v2p::pfilter
