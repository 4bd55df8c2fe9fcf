#include "correlator/tag_join.hpp"

#include <algorithm>

namespace v2p::correlator {
namespace {

bool in_window(const ContextRecord& r, std::uint64_t ts) noexcept {
  return r.submit_ns <= ts && ts <= r.complete_ns;
}

IoOp op_of(const ContextRecord& r) noexcept {
  return static_cast<IoOp>(r.op);
}

// std::erase_if for any vector-like container (the predicate runs exactly once per element).
template <class C, class P>
void erase_where(C& c, P pred) {
  c.erase(std::remove_if(c.begin(), c.end(), pred), c.end());
}

std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) noexcept {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

}  // namespace

TagJoin::Request* TagJoin::acquire(const ContextRecord& rec) {
  Request* r;
  if (free_.empty()) {
    r = &pool_.emplace_back();
  } else {
    r = free_.back();
    free_.pop_back();
  }
  r->rec = rec;
  r->bios.clear();
  r->bytes = 0;
  return r;
}

void TagJoin::release(Request* r) {
  free_.push_back(r);
}

void TagJoin::remove(Bucket& b, Request& r) {
  b.requests.erase(b.requests.iterator_to(r));
  if (b.requests.empty()) b.newest_complete = 0;
  release(&r);
  --pending_records_;
}

void TagJoin::on_event(std::uint32_t tgid, std::uint16_t slot, const Bio& b) {
  Bucket& bucket = buckets_[slot_key(tgid, slot)];
  if (b.ts_ns <= bucket.newest_complete) {
    // A slot's windows never overlap: at most one request can hold ts, most likely a recent one.
    for (auto it = bucket.requests.rbegin(); it != bucket.requests.rend(); ++it) {
      Request& r = *it;
      if (!in_window(r.rec, b.ts_ns)) continue;
      ++stats_.joined_exact;
      if (!carries_data_of(b, op_of(r.rec))) return;
      r.bios.push_back(b);
      r.bytes += b.bytes;
      if (r.bytes >= r.rec.length && try_finish(r, false)) remove(bucket, r);
      return;
    }
  }
  // Orphans are kept in time order (ties in arrival order) so a record takes its bios as one
  // contiguous run. Bios arrive almost in order: the insert is nearly always at the end.
  auto& orphans = bucket.orphans;
  if (bucket.head == orphans.size() || orphans.back().ts_ns <= b.ts_ns) {
    orphans.push_back(b);
  } else {
    const auto from = orphans.begin() + static_cast<std::ptrdiff_t>(bucket.head);
    orphans.insert(std::upper_bound(from, orphans.end(), b.ts_ns,
                                    [](std::uint64_t t, const Bio& o) { return t < o.ts_ns; }),
                   b);
  }
  ++pending_events_;
  next_deadline_ = std::min(next_deadline_, saturating_add(b.ts_ns, opts_.horizon_ns));
}

void TagJoin::on_record(const ContextRecord& rec) {
  Bucket& bucket = buckets_[slot_key(rec.tgid, rec.slot)];
  Request& req = *acquire(rec);
  const IoOp op = op_of(rec);
  // The orphans in the request's window: one run of the time-ordered orphans. The export sends
  // records in batches after their bios, so a bucket often holds the bios of dozens of requests;
  // a search replaces the scan of all of them.
  auto& orphans = bucket.orphans;
  const auto live = orphans.begin() + static_cast<std::ptrdiff_t>(bucket.head);
  const auto first = std::lower_bound(live, orphans.end(), rec.submit_ns,
                                      [](const Bio& o, std::uint64_t t) { return o.ts_ns < t; });
  auto last = first;
  for (; last != orphans.end() && last->ts_ns <= rec.complete_ns; ++last) {
    ++stats_.joined_exact;
    --pending_events_;
    if (carries_data_of(*last, op)) {
      req.bios.push_back(*last);
      req.bytes += last->bytes;
    }
  }
  if (first == live) {
    bucket.head += static_cast<std::size_t>(last - first);
    // Reclaim the consumed front once it is most of the vector (amortised O(1) per bio).
    if (bucket.head == orphans.size()) {
      orphans.clear();
      bucket.head = 0;
    } else if (bucket.head >= 32 && bucket.head * 2 >= orphans.size()) {
      orphans.erase(orphans.begin(), orphans.begin() + static_cast<std::ptrdiff_t>(bucket.head));
      bucket.head = 0;
    }
  } else {
    orphans.erase(first, last);
  }
  const bool placeable = rec.result == 0 && (op == IoOp::kRead || op == IoOp::kWrite) &&
                         rec.length != 0 && !(req.bytes >= rec.length && try_finish(req, false));
  if (rec.result == 0 && (op == IoOp::kDiscard || op == IoOp::kWriteZeroes)) {
    // The file system freed (or may have freed) the range; a later read or write reveals the
    // new layout.
    map_.unmap(rec.key(), rec.offset(), rec.length);
    trims_.add(rec.key(), rec.voffset, rec.voffset + rec.length, rec.submit_ns, rec.complete_ns);
    ++stats_.trims;
  }
  // A failed request proves nothing about the layout; a placed one is done.
  if (!placeable) {
    release(&req);
    return;
  }
  bucket.requests.push_back(req);
  bucket.newest_complete = std::max(bucket.newest_complete, rec.complete_ns);
  waiting_.emplace_back(rec.complete_ns, slot_key(rec.tgid, rec.slot));
  ++pending_records_;
  next_deadline_ = std::min(next_deadline_, saturating_add(rec.complete_ns, opts_.horizon_ns));
}

void TagJoin::note_event_time(std::uint64_t ts_ns) {
  if (ts_ns <= event_watermark_) return;
  event_watermark_ = ts_ns;
  finish_settled();
}

void TagJoin::finish_settled() {
  while (!waiting_.empty() &&
         saturating_add(waiting_.front().first, opts_.event_reorder_ns) < event_watermark_) {
    // Named variables, not a structured binding: clang 14 cannot capture a binding in the lambda.
    const auto complete = waiting_.front().first;
    const auto key = waiting_.front().second;
    waiting_.pop_front();
    const auto it = buckets_.find(key);
    if (it == buckets_.end()) continue;
    Bucket& bucket = it->second;
    for (auto r = bucket.requests.begin(); r != bucket.requests.end();) {
      Request& req = *r++;
      if (req.rec.complete_ns != complete) continue;
      try_finish(req, true);
      remove(bucket, req);
    }
  }
}

bool TagJoin::try_finish(Request& r, bool timed_out) {
  auto& bios = r.bios;
  // Stable insertion sort in place: a request has a handful of bios, almost always already in
  // time order, and std::stable_sort allocated a temporary buffer for every request.
  for (std::size_t i = 1; i < bios.size(); ++i) {
    if (bios[i - 1].ts_ns <= bios[i].ts_ns) continue;
    const Bio b = bios[i];
    std::size_t j = i;
    for (; j > 0 && bios[j - 1].ts_ns > b.ts_ns; --j) bios[j] = bios[j - 1];
    bios[j] = b;
  }
  // A bio the block layer split is queued again for its remainder: the same end, a later start.
  // Counting it twice would shift every later voffset.
  std::uint64_t bytes = 0;
  std::size_t kept = 0;
  for (std::size_t i = 0; i < bios.size(); ++i) {
    const Bio& b = bios[i];
    const std::uint64_t end = b.sector * 512 + b.bytes;
    const bool remainder = std::any_of(bios.begin(), bios.begin() + kept, [&](const Bio& a) {
      return a.dev == b.dev && a.sector < b.sector && a.sector * 512 + a.bytes == end;
    });
    if (remainder) continue;
    bios[kept++] = b;
    bytes += b.bytes;
  }
  bios.resize(kept);
  r.bytes = bytes;
  if (bytes == r.rec.length) {
    place(r);
    return true;
  }
  if (!timed_out) return false;
  if (bytes < r.rec.length && op_of(r.rec) == IoOp::kRead && !(r.rec.flags & kContextNoHole)) {
    ++stats_.ambiguous_reads;  // holes read as zeroes without bios: offsets unknowable
  } else {
    ++stats_.incomplete_requests;
  }
  return true;
}

void TagJoin::place(const Request& r) {
  ++stats_.placed_requests;
  std::uint64_t v = r.rec.voffset;
  const VdiskKey key = r.rec.key();
  for (const Bio& b : r.bios) {
    trims_.surviving(key, v, v + b.bytes, b.ts_ns, [&](std::uint64_t a, std::uint64_t e) {
      map_.map(key, {VirtualOffset{a}, e - a, DeviceId::from_kernel(b.dev),
                     PhysicalSector{b.sector + (a - v) / 512}, b.ts_ns, 1.0f});
    });
    v += b.bytes;
  }
}

void TagJoin::advance(std::uint64_t now_ns) {
  if (now_ns < next_deadline_) return;
  std::uint64_t next = UINT64_MAX;
  for (auto& [key, bucket] : buckets_) {
    bucket.orphans.erase(bucket.orphans.begin(),
                         bucket.orphans.begin() + static_cast<std::ptrdiff_t>(bucket.head));
    bucket.head = 0;
    erase_where(bucket.orphans, [&](const Bio& b) {
      const std::uint64_t deadline = saturating_add(b.ts_ns, opts_.horizon_ns);
      if (deadline > now_ns) {
        next = std::min(next, deadline);
        return false;
      }
      ++stats_.unattributed;
      --pending_events_;
      return true;
    });
    for (auto r = bucket.requests.begin(); r != bucket.requests.end();) {
      Request& req = *r++;
      const std::uint64_t deadline = saturating_add(req.rec.complete_ns, opts_.horizon_ns);
      if (deadline > now_ns) {
        next = std::min(next, deadline);
        continue;
      }
      try_finish(req, true);
      remove(bucket, req);
    }
  }
  next_deadline_ = next;
}

void TagJoin::drain() {
  next_deadline_ = 0;
  advance(UINT64_MAX);
  waiting_.clear();
}

}  // namespace v2p::correlator
