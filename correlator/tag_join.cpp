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

void TagJoin::on_event(std::uint32_t tgid, std::uint16_t slot, const Bio& b) {
  Bucket& bucket = buckets_[slot_key(tgid, slot)];
  for (auto it = bucket.requests.begin(); it != bucket.requests.end(); ++it) {
    if (!in_window(it->rec, b.ts_ns)) continue;
    ++stats_.joined_exact;
    if (!carries_data_of(b, op_of(it->rec))) return;
    it->bios.push_back(b);
    it->bytes += b.bytes;
    if (it->bytes >= it->rec.length && try_finish(*it, false)) {
      bucket.requests.erase(it);
      --pending_records_;
    }
    return;
  }
  bucket.orphans.push_back(b);
  ++pending_events_;
  next_deadline_ = std::min(next_deadline_, saturating_add(b.ts_ns, opts_.horizon_ns));
}

void TagJoin::on_record(const ContextRecord& rec) {
  Bucket& bucket = buckets_[slot_key(rec.tgid, rec.slot)];
  Request req{rec, {}, 0};
  const IoOp op = op_of(rec);
  erase_where(bucket.orphans, [&](const Bio& b) {
    if (!in_window(rec, b.ts_ns)) return false;
    ++stats_.joined_exact;
    --pending_events_;
    if (carries_data_of(b, op)) {
      req.bios.push_back(b);
      req.bytes += b.bytes;
    }
    return true;
  });
  if (rec.result != 0) return;  // a failed request proves nothing about the layout
  if (op == IoOp::kDiscard || op == IoOp::kWriteZeroes) {
    // The file system freed (or may have freed) the range; a later read or write reveals the
    // new layout.
    map_.unmap(rec.key(), rec.offset(), rec.length);
    trims_.add(rec.key(), rec.voffset, rec.voffset + rec.length, rec.submit_ns, rec.complete_ns);
    ++stats_.trims;
    return;
  }
  if ((op != IoOp::kRead && op != IoOp::kWrite) || rec.length == 0) return;
  if (req.bytes >= rec.length && try_finish(req, false)) return;
  bucket.requests.push_back(std::move(req));
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
    erase_where(it->second.requests, [&](Request& r) {
      if (r.rec.complete_ns != complete) return false;
      try_finish(r, true);
      --pending_records_;
      return true;
    });
  }
}

bool TagJoin::try_finish(Request& r, bool timed_out) {
  auto& bios = r.bios;
  std::stable_sort(bios.begin(), bios.end(),
                   [](const Bio& a, const Bio& b) { return a.ts_ns < b.ts_ns; });
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
    erase_where(bucket.requests, [&](Request& r) {
      const std::uint64_t deadline = saturating_add(r.rec.complete_ns, opts_.horizon_ns);
      if (deadline > now_ns) {
        next = std::min(next, deadline);
        return false;
      }
      try_finish(r, true);
      --pending_records_;
      return true;
    });
  }
  next_deadline_ = next;
}

void TagJoin::drain() {
  next_deadline_ = 0;
  advance(UINT64_MAX);
  waiting_.clear();
}

}  // namespace v2p::correlator
