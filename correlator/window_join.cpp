#include "correlator/window_join.hpp"

#include <algorithm>

namespace v2p::correlator {
namespace {

std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) noexcept {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

}  // namespace

void WindowJoin::add_backend(std::uint32_t tgid) {
  if (!is_backend(tgid)) backends_.push_back(tgid);
}

bool WindowJoin::is_backend(std::uint32_t tgid) const noexcept {
  return std::find(backends_.begin(), backends_.end(), tgid) != backends_.end();
}

void WindowJoin::on_event(std::uint32_t tgid, const Bio& b) {
  events_.push_back({tgid, b});
}

void WindowJoin::on_record(const ContextRecord& r) {
  const auto op = static_cast<IoOp>(r.op);
  if (r.result != 0 || r.length == 0 || (op != IoOp::kRead && op != IoOp::kWrite)) return;
  records_.push_back({r, 0});
}

bool WindowJoin::could_own(const Candidate& c, const Pending& p) const noexcept {
  const ContextRecord& r = c.rec;
  const Bio& b = p.bio;
  // A record published by a process that is not the backend itself (the vfilter forwarding to
  // it) names tgid 0 or the backend.
  return r.submit_ns <= b.ts_ns && b.ts_ns <= r.complete_ns && b.bytes <= r.length &&
         carries_data_of(b, static_cast<IoOp>(r.op)) && (r.tgid == p.tgid || r.tgid == 0);
}

void WindowJoin::assign(const Pending& p) {
  const Bio& b = p.bio;
  cands_.clear();
  for (std::size_t i = 0; i < records_.size(); ++i) {
    if (could_own(records_[i], p) && records_[i].certain + b.bytes <= records_[i].rec.length) {
      cands_.push_back(i);
    }
  }
  if (cands_.empty()) {
    ++stats_.unattributed;
    return;
  }
  auto predicted = [&](const Candidate& c) {
    const std::uint64_t into = c.consumed + b.bytes <= c.rec.length ? c.consumed : 0;
    return c.rec.voffset + into;
  };
  consistent_.clear();
  float kept_confidence = 0;
  for (const std::size_t i : cands_) {
    const auto& c = records_[i];
    const std::uint64_t v = predicted(c);
    const auto e = map_.find(c.rec.key(), VirtualOffset{v});
    if (e && e->device.kernel() == b.dev &&
        e->sector.value() * 512 + (v - e->voffset.value()) == b.sector * 512) {
      consistent_.push_back(i);
      kept_confidence = std::max(kept_confidence, e->confidence);
    }
  }
  const auto& pool = consistent_.empty() ? cands_ : consistent_;
  const std::size_t pick =
      pool[std::uniform_int_distribution<std::size_t>(0, pool.size() - 1)(rng_)];
  Candidate& c = records_[pick];
  const bool sole = cands_.size() == 1;
  // Whether the offset inside the request is known: the bio is the whole request, or every
  // earlier bio of the request went to it with certainty and, for a read, nothing before it was
  // a hole (read as zeroes without a bio).
  const bool no_holes =
      static_cast<IoOp>(c.rec.op) == IoOp::kWrite || (c.rec.flags & kContextNoHole);
  // Backend I/O of its own in the window: a partial bio's offset is unknown, and a whole one is
  // one of several that only this request could own, of which at most length bytes are data.
  const bool surplus = c.exclusive > c.rec.length;
  const bool offset_known = b.bytes == c.rec.length ||
                            (sole && no_holes && !c.tainted && !surplus && c.consumed == c.certain);
  if (!sole) {
    for (const std::size_t i : cands_) records_[i].tainted = true;
  }
  if (consistent_.empty() && !offset_known) {
    ++stats_.unplaced_window;
    ++stats_.unattributed;
    return;
  }
  const float share =
      surplus ? static_cast<float>(double(c.rec.length) / double(c.exclusive)) : 1.0f;
  const float confidence =
      consistent_.empty() ? share / static_cast<float>(cands_.size()) : kept_confidence;
  const Mapping m{VirtualOffset{predicted(c)}, b.bytes, DeviceId::from_kernel(b.dev),
                  PhysicalSector{b.sector},    b.ts_ns, confidence};
  c.consumed += b.bytes;
  if (sole) c.certain += b.bytes;
  trims_.surviving(c.rec.key(), m.voffset.value(), m.voffset.value() + m.length, b.ts_ns,
                   [&](std::uint64_t a, std::uint64_t e) {
                     Mapping piece = m;
                     piece.voffset = VirtualOffset{a};
                     piece.length = e - a;
                     piece.sector =
                         PhysicalSector{m.sector.value() + (a - m.voffset.value()) / 512};
                     map_.map(c.rec.key(), piece);
                   });
  ++stats_.joined_window;
  if (observer_) {
    observer_({c.rec.key(), m, static_cast<std::uint32_t>(cands_.size()), !consistent_.empty(),
               confidence, b.ts_ns});
  }
}

void WindowJoin::advance(std::uint64_t now_ns) {
  // Bios old enough that every request containing them has been published, in time order.
  auto ready_end = std::partition(events_.begin(), events_.end(), [&](const Pending& p) {
    return saturating_add(p.bio.ts_ns, opts_.window_settle_ns) <= now_ns;
  });
  if (ready_end != events_.begin()) {
    std::vector<Pending> ready(events_.begin(), ready_end);
    events_.erase(events_.begin(), ready_end);
    std::stable_sort(ready.begin(), ready.end(),
                     [](const Pending& a, const Pending& b) { return a.bio.ts_ns < b.bio.ts_ns; });
    // Every bio up to here is known: one whose window has ended by then has all its bios among
    // them (or already assigned).
    const std::uint64_t known_until =
        now_ns == UINT64_MAX ? UINT64_MAX : now_ns - std::min(now_ns, opts_.window_settle_ns);
    // The candidates of a ready bio are final: count the bytes each request alone could own.
    for (auto& p : ready) {
      if (p.counted) continue;
      p.counted = true;
      std::size_t owners = 0, owner = 0;
      for (std::size_t i = 0; i < records_.size() && owners < 2; ++i) {
        if (could_own(records_[i], p)) {
          ++owners;
          owner = i;
        }
      }
      if (owners == 1) records_[owner].exclusive += p.bio.bytes;
    }
    // Assign in time order up to the first bio a request whose window is still open could own:
    // that request's exclusive count is not complete yet. It and later bios wait.
    std::size_t done = 0;
    for (; done < ready.size(); ++done) {
      const bool open = std::any_of(records_.begin(), records_.end(), [&](const Candidate& c) {
        return c.rec.complete_ns > known_until && could_own(c, ready[done]);
      });
      if (open) break;
      assign(ready[done]);
    }
    events_.insert(events_.end(), ready.begin() + static_cast<std::ptrdiff_t>(done), ready.end());
  }
  std::erase_if(records_, [&](const Candidate& c) {
    return saturating_add(c.rec.complete_ns, opts_.horizon_ns) <= now_ns;
  });
}

void WindowJoin::drain() {
  advance(UINT64_MAX);
}

}  // namespace v2p::correlator
