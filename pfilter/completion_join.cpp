#include "pfilter/completion_join.hpp"

#include <iterator>

namespace v2p::pfilter {

CompletionJoin::CompletionJoin(std::size_t max_entries)
    : max_entries_(max_entries == 0 ? 1 : max_entries) {}

CompletionJoin::~CompletionJoin() {
  // The lists only link entries the pool owns: unlink before the pool goes.
  by_age_.clear();
  for (auto& [bio, list] : by_address_) list.clear();
}

void CompletionJoin::remove(Entry& e, AddressList& list) {
  by_age_.erase(by_age_.iterator_to(e));
  list.erase(list.iterator_to(e));
  free_.push_back(&e);
  if (list.empty()) by_address_.erase(e.bio);
}

void CompletionJoin::queued(std::uint64_t bio, const PhysEvent& e) {
  if (by_age_.size() >= max_entries_) {
    Entry& oldest = by_age_.front();
    remove(oldest, by_address_.find(oldest.bio)->second);
    evicted_.fetch_add(1, std::memory_order_relaxed);
  }
  Entry* entry;
  if (free_.empty()) {
    entry = &pool_.emplace_back();
  } else {
    entry = free_.back();
    free_.pop_back();
  }
  entry->event = e;
  entry->bio = bio;
  by_age_.push_back(*entry);
  // Sorted by queue time: batches of different CPUs can arrive in either order.
  AddressList& list = by_address_[bio];
  auto at = list.end();
  while (at != list.begin() && std::prev(at)->event.ts_ns > e.ts_ns) --at;
  list.insert(at, *entry);
}

bool CompletionJoin::completed(std::uint64_t bio, std::uint64_t ts_ns, std::int32_t error,
                               PhysEvent& out) {
  const auto found = by_address_.find(bio);
  if (found == by_address_.end()) return false;
  AddressList& list = found->second;
  // The latest use queued at or before the completion.
  auto use = list.end();
  for (auto it = list.begin(); it != list.end() && it->event.ts_ns <= ts_ns; ++it) use = it;
  if (use == list.end()) return false;
  out = use->event;
  out.latency_ns = ts_ns - out.ts_ns;
  out.ts_ns = ts_ns;
  out.kind = static_cast<std::uint8_t>(PhysEventKind::kComplete);
  out.error = error;
  // Older uses of the address lost their completions (see the class comment).
  while (&list.front() != &*use) {
    remove(list.front(), list);
    evicted_.fetch_add(1, std::memory_order_relaxed);
  }
  remove(*use, list);  // last: may erase the list
  return true;
}

}  // namespace v2p::pfilter
