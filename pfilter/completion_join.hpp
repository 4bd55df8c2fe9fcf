// The join of a bio's queue event with its completion, in user space: the kernel sends each
// queue event with the bio's address and, later, completion records naming completed addresses
// (pfilter/blockio.h), so it keeps no per-bio state.
#pragma once

#include <boost/intrusive/list.hpp>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <unordered_map>
#include <vector>

#include "v2p/records.hpp"

namespace v2p::pfilter {

// Queue events of bios in flight, by bio address. The kernel reuses a bio's memory as soon as it
// completes, so one address has a queue event per use, and its uses never overlap in time: a
// completion belongs to the latest use queued at or before it. Both kinds of event reach user
// space late and out of order (per-CPU batches), so the probe joins a completion only once every
// queue event older than it has arrived, and joins them in time order (pfilter/probe.cpp). Then
// an address's entries older than the use a completion joins can never be joined: their
// completions, all older, came first or were lost. They are dropped and counted.
//
// Each address keeps its entries sorted by queue time, usually one or two; all entries form one
// list in arrival order too, so at the bound the oldest gives way (counted). Entries live in a
// pool that grows as needed and is reused.
class CompletionJoin {
 public:
  static constexpr std::size_t kMaxEntries = 262144;  // ≈ 31 MB

  explicit CompletionJoin(std::size_t max_entries = kMaxEntries);
  CompletionJoin(const CompletionJoin&) = delete;
  CompletionJoin& operator=(const CompletionJoin&) = delete;
  ~CompletionJoin();

  void queued(std::uint64_t bio, const PhysEvent& e);

  // The completion event of bio: its queue event's fields, the completion's time, kind, error
  // and latency; false when no queue event of the address precedes ts_ns (a bio queued before
  // the probe attached, by a process the filter excludes, or the front part of a split).
  bool completed(std::uint64_t bio, std::uint64_t ts_ns, std::int32_t error, PhysEvent& out);

  // Queue events whose completion will not be reported: given up at the bound, or older than a
  // later use of their address that completed.
  [[nodiscard]] std::uint64_t evicted() const { return evicted_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::size_t size() const { return by_age_.size(); }

 private:
  using Hook = boost::intrusive::list_member_hook<>;
  struct Entry {
    PhysEvent event;
    std::uint64_t bio = 0;
    Hook by_address;
    Hook by_age;
  };
  template <Hook Entry::*H>
  using List = boost::intrusive::list<Entry, boost::intrusive::member_hook<Entry, Hook, H>>;
  using AddressList = List<&Entry::by_address>;
  using AgeList = List<&Entry::by_age>;

  void remove(Entry& e, AddressList& list);  // list: e's address list

  std::size_t max_entries_;
  std::unordered_map<std::uint64_t, AddressList> by_address_;
  AgeList by_age_;
  std::deque<Entry> pool_;  // stable addresses for the intrusive hooks
  std::vector<Entry*> free_;
  std::atomic<std::uint64_t> evicted_{0};  // read by other threads for statistics
};

}  // namespace v2p::pfilter
