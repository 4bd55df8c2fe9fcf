// The exact join: bios tagged with a slot, matched to the request of (tgid, slot) whose
// [submit, complete] window contains them. Either side may arrive first; both wait up to the
// horizon. A request is placed as soon as its bios add up to its length.
#pragma once

#include <boost/container/small_vector.hpp>
#include <boost/intrusive/list.hpp>
#include <cstdint>
#include <deque>
#include <unordered_map>
#include <vector>

#include "correlator/bio.hpp"
#include "correlator/correlator.hpp"
#include "correlator/map_changes.hpp"
#include "correlator/trim_log.hpp"

namespace v2p::correlator {

class TagJoin {
 public:
  TagJoin(MapWriter& map, Stats& stats, TrimLog& trims, const Options& options)
      : map_(map), stats_(stats), trims_(trims), opts_(options) {}

  void on_event(std::uint32_t tgid, std::uint16_t slot, const Bio& b);
  // Every bio's time, tagged or not: the event stream's progress (see Options::event_reorder_ns).
  void note_event_time(std::uint64_t ts_ns);
  void on_record(const ContextRecord& r);
  void advance(std::uint64_t now_ns);
  void drain();
  [[nodiscard]] std::uint64_t pending_records() const noexcept { return pending_records_; }
  [[nodiscard]] std::uint64_t pending_events() const noexcept { return pending_events_; }

 private:
  using Bios = boost::container::small_vector<Bio, 4>;
  // Requests waiting for bios live in a pool and are linked into their bucket: a bucket can
  // hold dozens (reads over holes wait event_reorder_ns), and erasing one from a vector moved
  // all the later ones (the join's largest cost in callgrind). No allocation per record once the
  // pool has grown to the number of requests in flight.
  struct Request : boost::intrusive::list_base_hook<> {
    ContextRecord rec;
    Bios bios;                // data bios, in arrival order
    std::uint64_t bytes = 0;  // sum of data bio bytes
  };
  using Requests = boost::intrusive::list<Request, boost::intrusive::constant_time_size<false>>;
  // Buckets stay allocated once a (tgid, slot) was seen: slots are few and reused constantly.
  struct Bucket {
    Requests requests;  // in arrival (= completion) order
    // No request of the bucket completed after this: a bio newer than it (the common case: bios
    // arrive before their request is published) goes to the orphans without a scan.
    std::uint64_t newest_complete = 0;
    // Bios no published request claims yet, in time order, from orphans[head] on: requests
    // take theirs mostly from the front, which then only moves `head` (no copy of the rest).
    Bios orphans;
    std::size_t head = 0;
  };

  Request* acquire(const ContextRecord& rec);
  void release(Request* r);
  // Unlinks r from bucket b and returns it to the pool.
  void remove(Bucket& b, Request& r);

  // Places the request when its bios add up; on time-out gives it up. True when done with it.
  bool try_finish(Request& r, bool timed_out);
  // Gives up requests whose bios have all been delivered but do not add up.
  void finish_settled();
  void place(const Request& r);

  MapWriter& map_;
  Stats& stats_;
  TrimLog& trims_;
  const Options& opts_;
  // Declared before buckets_ so the requests outlive the lists that link them.
  std::deque<Request> pool_;
  std::vector<Request*> free_;
  std::unordered_map<std::uint64_t, Bucket> buckets_;
  std::uint64_t pending_records_ = 0, pending_events_ = 0;
  std::uint64_t next_deadline_ = UINT64_MAX;  // nothing can expire before this
  std::uint64_t event_watermark_ = 0;         // newest bio time delivered
  // Waiting requests in arrival (= completion) order: (complete_ns, slot key).
  std::deque<std::pair<std::uint64_t, std::uint64_t>> waiting_;
};

}  // namespace v2p::correlator
