#include "pfilter/completion_join.hpp"

namespace v2p::pfilter {

CompletionJoin::CompletionJoin() : keys_(std::size_t{1} << kSlotBits, 0), queued_(keys_.size()) {}

std::size_t CompletionJoin::home(std::uint64_t bio) {
  return static_cast<std::size_t>((bio * 0x9E3779B97F4A7C15ULL) >> (64 - kSlotBits));
}

void CompletionJoin::queued(std::uint64_t bio, const PhysEvent& e) {
  const std::size_t h = home(bio);
  std::size_t at = h;
  for (std::size_t i = 0; i < kWindow; ++i) {
    const std::size_t s = slot(h, i);
    if (keys_[s] == 0) {
      at = s;
      break;
    }
    if (queued_[s].ts_ns < queued_[at].ts_ns) at = s;
  }
  if (keys_[at] != 0) evicted_.fetch_add(1, std::memory_order_relaxed);
  keys_[at] = bio;
  queued_[at] = e;
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
  out = queued_[found];
  out.latency_ns = ts_ns - out.ts_ns;
  out.ts_ns = ts_ns;
  out.kind = static_cast<std::uint8_t>(PhysEventKind::kComplete);
  out.error = error;
  return true;
}

}  // namespace v2p::pfilter
