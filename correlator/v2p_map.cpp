// V2PMap: forward extents per vdisk in a SortedChunks keyed by voffset, and one reverse index per
// device keyed by (sector, vdisk). Every mutation keeps three invariants the tests check against
// a per-sector reference twin: extents of a vdisk never overlap; no two neighbours could be
// coalesced; no physical sector has two owners.
#include "v2p/map.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <unordered_map>

#include "correlator/extent_entry.hpp"
#include "correlator/sorted_chunks.hpp"

namespace v2p {

using correlator::confidence_of;
using correlator::FwdEntry;
using correlator::FwdKey;
using correlator::kSector;
using correlator::kVdiskMask;
using correlator::quantize_confidence;
using correlator::rev_entry;
using correlator::RevEntry;
using correlator::RevKey;
using correlator::sectors_for;

namespace {

using Forward = correlator::SortedChunks<FwdEntry, std::uint64_t, FwdKey>;
using Reverse = correlator::SortedChunks<RevEntry, RevEntry, RevKey>;

struct VdiskState {
  Forward fwd;
  std::uint64_t mapped = 0;
  std::uint16_t index = 0;  // in the map's vdisk table (packed into reverse entries)
};

bool mergeable(const FwdEntry& a, const FwdEntry& b) noexcept {
  return a.end() == b.voffset && a.dev == b.dev && a.length % kSector == 0 &&
         a.sector + a.length / kSector == b.sector && a.generation == b.generation &&
         a.conf_q == b.conf_q;
}

// Byte position on the device of voffset `v` inside extent e.
std::uint64_t phys_byte(const FwdEntry& e, std::uint64_t v) noexcept {
  return e.sector * kSector + (v - e.voffset);
}

// The part [a, b) of e, with its sector adjusted.
FwdEntry clip(const FwdEntry& e, std::uint64_t a, std::uint64_t b) noexcept {
  FwdEntry c = e;
  c.voffset = a;
  c.length = b - a;
  c.sector = e.sector + (a - e.voffset) / kSector;
  return c;
}

}  // namespace

struct V2PMap::Impl {
  std::vector<DeviceId> devices;
  std::vector<Reverse> reverse;  // per device index
  std::unordered_map<VdiskKey, std::uint16_t> index;
  std::vector<VdiskKey> keys;      // per vdisk index
  std::vector<VdiskState> states;  // per vdisk index
  std::size_t extents = 0;
  std::uint64_t max_sectors = 0;  // longest extent ever held, in sectors (never shrinks)
  std::vector<FwdEntry> old_scratch, new_scratch;
  struct Victim {
    std::uint16_t vdisk;
    std::uint64_t v0, v1;
  };
  std::vector<Victim> victims;
  // Set by evict_physical for the insert that follows it (see there).
  std::optional<Reverse::Pos> rev_hint;
  bool rev_hint_valid = false;

  std::uint16_t intern(DeviceId d) {
    for (std::size_t i = 0; i < devices.size(); ++i) {
      if (devices[i] == d) return static_cast<std::uint16_t>(i);
    }
    devices.push_back(d);
    reverse.emplace_back();
    return static_cast<std::uint16_t>(devices.size() - 1);
  }
  std::optional<std::uint16_t> index_of(DeviceId d) const {
    for (std::size_t i = 0; i < devices.size(); ++i) {
      if (devices[i] == d) return static_cast<std::uint16_t>(i);
    }
    return std::nullopt;
  }
  VdiskState& state(VdiskKey key) {
    const auto [it, added] = index.try_emplace(key, static_cast<std::uint16_t>(states.size()));
    if (added) {
      if (states.size() > kVdiskMask) throw std::length_error("V2PMap holds at most 65536 vdisks");
      keys.push_back(key);
      states.emplace_back();
      states.back().index = it->second;
    }
    return states[it->second];
  }
  const VdiskState* find_state(VdiskKey key) const {
    // A host has a handful of vdisks: a scan of the whole key table beats hashing, and without
    // an early exit it compiles to conditional moves (random vdisks do not mispredict).
    if (keys.size() <= 16) {
      std::size_t found = keys.size();
      for (std::size_t i = 0; i < keys.size(); ++i) {
        found = keys[i] == key ? i : found;
      }
      return found == keys.size() ? nullptr : &states[found];
    }
    const auto it = index.find(key);
    return it == index.end() ? nullptr : &states[it->second];
  }

  MappedExtent to_public(const FwdEntry& e) const {
    return {VirtualOffset{e.voffset},
            e.length,
            devices[e.dev],
            PhysicalSector{e.sector},
            e.generation,
            e.last_seen_ms * correlator::kNsPerMs,
            confidence_of(static_cast<std::uint16_t>(e.conf_q))};
  }

  // Entries overlapping [v0, v1), unclipped, in order. Returns the position of the last entry
  // starting at or before v0 (the left neighbour when nothing overlaps).
  static std::optional<Forward::Pos> overlapping(const Forward& f, std::uint64_t v0,
                                                 std::uint64_t v1, std::vector<FwdEntry>& out) {
    out.clear();
    const auto p = f.last_le(v0);
    Forward::Pos pos;
    if (p) {
      pos = *p;
      if (f.get(pos).end() <= v0) pos = f.next(pos);
    } else {
      pos = f.begin();
    }
    for (; !f.at_end(pos) && f.get(pos).voffset < v1; pos = f.next(pos)) out.push_back(f.get(pos));
    return p;
  }

  void erase_entry(VdiskState& vs, const FwdEntry& e) {
    vs.fwd.erase_key(e.voffset);
    reverse[e.dev].erase_key(rev_entry(e.sector, vs.index, e.voffset));
    vs.mapped -= e.length;
    --extents;
  }

  void insert_raw(VdiskState& vs, const FwdEntry& e) {
    vs.fwd.insert(e);
    max_sectors = std::max(max_sectors, sectors_for(e.length));
    reverse[e.dev].insert(rev_entry(e.sector, vs.index, e.voffset));
    vs.mapped += e.length;
    ++extents;
  }

  // Inserts e (which overlaps nothing) and coalesces it with its neighbours.
  void insert_coalesced(VdiskState& vs, FwdEntry e) {
    if (e.voffset > 0) {
      if (auto p = vs.fwd.last_le(e.voffset - 1)) {
        FwdEntry& left = vs.fwd.get(*p);
        if (mergeable(left, e)) {
          left.length += e.length;
          max_sectors = std::max(max_sectors, sectors_for(left.length));
          touch(left, e);
          vs.mapped += e.length;
          absorb_right(vs, left.voffset);
          return;
        }
      }
    }
    insert_raw(vs, e);
    absorb_right(vs, e.voffset);
  }

  // insert_coalesced for an extent whose range the vdisk does not map at all: finds both
  // neighbours with one search and grows one of them in place when it can.
  static std::optional<Forward::Pos> search_left(const VdiskState& vs, std::uint64_t v) {
    return v > 0 ? vs.fwd.last_le(v - 1) : std::nullopt;
  }

  // lp: the last extent starting before e (nullopt when none).
  void insert_fresh(VdiskState& vs, const FwdEntry& e, std::optional<Forward::Pos> lp) {
    Forward& f = vs.fwd;
    if (lp && mergeable(f.get(*lp), e)) {
      FwdEntry& left = f.get(*lp);
      left.length += e.length;
      max_sectors = std::max(max_sectors, sectors_for(left.length));
      touch(left, e);
      vs.mapped += e.length;
      const auto rp = f.next(*lp);
      if (!f.at_end(rp) && mergeable(left, f.get(rp))) absorb_right(vs, left.voffset);
      return;
    }
    const auto rp = lp ? f.next(*lp) : f.begin();
    if (!f.at_end(rp) && mergeable(e, f.get(rp))) {
      // Grow the right neighbour downwards: nothing lies between, so its order is unchanged.
      FwdEntry& right = f.get(rp);
      Reverse& r = reverse[right.dev];
      r.erase_key(rev_entry(right.sector, vs.index, right.voffset));
      f.rekey(rp, e.voffset, [](FwdEntry& x, std::uint64_t v) { x.voffset = v; });
      right.length += e.length;
      max_sectors = std::max(max_sectors, sectors_for(right.length));
      right.sector = e.sector;
      touch(right, e);
      r.insert(rev_entry(right.sector, vs.index, right.voffset));
      vs.mapped += e.length;
      return;
    }
    f.insert_after(lp, e);
    max_sectors = std::max(max_sectors, sectors_for(e.length));
    if (rev_hint_valid) {
      reverse[e.dev].insert_after(rev_hint, rev_entry(e.sector, vs.index, e.voffset));
    } else {
      reverse[e.dev].insert(rev_entry(e.sector, vs.index, e.voffset));
    }
    vs.mapped += e.length;
    ++extents;
  }

  // Merges the extent after the one at voffset `v` into it when they are coalescible.
  void absorb_right(VdiskState& vs, std::uint64_t v) {
    auto pos = vs.fwd.lower_bound(v);
    const auto nxt = vs.fwd.next(pos);
    if (vs.fwd.at_end(nxt)) return;
    const FwdEntry right = vs.fwd.get(nxt);
    if (!mergeable(vs.fwd.get(pos), right)) return;
    erase_entry(vs, right);
    pos = vs.fwd.lower_bound(v);
    FwdEntry& left = vs.fwd.get(pos);
    left.length += right.length;
    max_sectors = std::max(max_sectors, sectors_for(left.length));
    touch(left, right);
    vs.mapped += right.length;
  }

  // Removes [v0, v1) from a vdisk, keeping the parts of cut extents outside it.
  void cut(VdiskState& vs, std::uint64_t v0, std::uint64_t v1) {
    std::vector<FwdEntry> olds;
    overlapping(vs.fwd, v0, v1, olds);
    cut(vs, v0, v1, olds);
  }
  // The same, for the extents overlapping [v0, v1) already collected.
  void cut(VdiskState& vs, std::uint64_t v0, std::uint64_t v1, const std::vector<FwdEntry>& olds) {
    for (const auto& o : olds) erase_entry(vs, o);
    for (const auto& o : olds) {
      if (o.voffset < v0) insert_raw(vs, clip(o, o.voffset, v0));
      if (o.end() > v1) insert_raw(vs, clip(o, v1, o.end()));
    }
  }

  // Removes every claim on sectors [s0, s1) of device `dev`, in every vdisk.
  // Leaves rev_hint at the reverse position a new entry for sector s0 goes after, when nothing
  // was evicted (the reverse index is then unchanged).
  void evict_physical(std::uint16_t dev, std::uint64_t s0, std::uint64_t s1) {
    victims.clear();
    rev_hint.reset();
    rev_hint_valid = true;
    const Reverse& r = reverse[dev];
    if (r.empty()) return;
    auto consider = [&](const RevEntry& re) {
      const VdiskState& vs = states[re.vdisk()];
      const FwdEntry& f = vs.fwd.get(vs.fwd.lower_bound(re.voffset));
      const std::uint64_t a = std::max(s0, f.sector),
                          b = std::min(s1, f.sector + sectors_for(f.length));
      if (a >= b) return;
      const std::uint64_t va = f.voffset + (a - f.sector) * kSector;
      const std::uint64_t vb = std::min(f.end(), f.voffset + (b - f.sector) * kSector);
      victims.push_back({re.vdisk(), va, vb});
    };
    // Under exclusivity only the last extent starting before s0 can reach into the range, and
    // only if it starts within the longest extent length ever mapped.
    if (s0 > 0) {
      rev_hint =
          r.last_le(rev_entry(s0 - 1, kVdiskMask, std::numeric_limits<std::uint64_t>::max()));
      if (rev_hint && r.get(*rev_hint).sector() + max_sectors > s0) consider(r.get(*rev_hint));
    }
    // The entry after the last one before s0 is the first at or after s0.
    for (auto pos = rev_hint ? r.next(*rev_hint) : r.begin();
         !r.at_end(pos) && r.get(pos).sector() < s1; pos = r.next(pos)) {
      consider(r.get(pos));
    }
    rev_hint_valid = victims.empty();
    for (const auto& v : victims) cut(states[v.vdisk], v.v0, v.v1);
  }

  // A re-observation of exactly what the map holds (no gap, same place, no higher confidence)
  // only refreshes last_seen: no structural change.
  bool refresh_only(VdiskState& vs, const FwdEntry& fresh) {
    std::uint64_t at = fresh.voffset;
    for (const auto& o : old_scratch) {
      if (o.voffset > at || o.dev != fresh.dev || phys_byte(o, at) != phys_byte(fresh, at) ||
          o.conf_q < fresh.conf_q) {
        return false;
      }
      at = o.end();
    }
    if (at < fresh.end()) return false;
    for (const auto& o : old_scratch) {
      FwdEntry& e = vs.fwd.get(vs.fwd.lower_bound(o.voffset));
      touch(e, fresh);
    }
    return true;
  }

  void map(VdiskKey key, const Mapping& m) {
    if (m.length == 0) return;
    const std::uint16_t dev = intern(m.device);
    const std::uint16_t q = quantize_confidence(m.confidence);
    VdiskState& vs = state(key);
    const std::uint64_t v0 = m.voffset.value(), v1 = v0 + m.length;
    const FwdEntry fresh =
        correlator::make_entry(v0, m.length, m.sector.value(), dev, q, m.seen_ns, 1);

    // What the new observation becomes, piece by piece, given what the map held there.
    const auto left = overlapping(vs.fwd, v0, v1, old_scratch);
    if (old_scratch.empty()) {
      // The common case (first sight of a range): no pieces, no generations to work out.
      const std::size_t before = vs.fwd.size();
      evict_physical(dev, fresh.sector, fresh.sector + sectors_for(m.length));
      // Eviction may have reshaped this vdisk's tree; the neighbour position is then stale.
      insert_fresh(vs, fresh,
                   vs.fwd.size() == before && victims.empty() ? left : search_left(vs, v0));
      return;
    }
    if (refresh_only(vs, fresh)) return;
    new_scratch.clear();
    auto emit = [&](std::uint64_t a, std::uint64_t b, std::uint32_t gen, std::uint16_t cq) {
      if (a >= b) return;
      if (!new_scratch.empty() && new_scratch.back().end() == a &&
          new_scratch.back().generation == gen && new_scratch.back().conf_q == cq &&
          new_scratch.back().length % kSector == 0) {
        new_scratch.back().length += b - a;
        return;
      }
      FwdEntry e = clip(fresh, a, b);
      e.generation = gen;
      e.conf_q = cq;
      new_scratch.push_back(e);
    };
    std::uint64_t at = v0;
    for (const auto& o : old_scratch) {
      const std::uint64_t a = std::max(o.voffset, v0), b = std::min(o.end(), v1);
      emit(at, a, 1, q);
      const bool same_place = o.dev == dev && phys_byte(o, a) == phys_byte(fresh, a);
      if (same_place) {
        emit(a, b, o.generation, std::max(static_cast<std::uint16_t>(o.conf_q), q));
      } else {
        emit(a, b, correlator::next_generation(o.generation), q);
      }
      at = b;
    }
    emit(at, v1, 1, q);

    cut(vs, v0, v1, old_scratch);
    evict_physical(dev, fresh.sector, fresh.sector + sectors_for(m.length));
    for (const auto& e : new_scratch) insert_coalesced(vs, e);
  }

  void unmap(VdiskKey key, std::uint64_t v0, std::uint64_t v1) {
    const auto it = index.find(key);
    if (it == index.end() || v0 >= v1) return;
    cut(states[it->second], v0, v1);
  }
};

V2PMap::V2PMap() : impl_(std::make_unique<Impl>()) {}
V2PMap::~V2PMap() = default;
V2PMap::V2PMap(const V2PMap& o) : impl_(std::make_unique<Impl>(*o.impl_)) {}
V2PMap& V2PMap::operator=(const V2PMap& o) {
  if (this != &o) impl_ = std::make_unique<Impl>(*o.impl_);
  return *this;
}
V2PMap::V2PMap(V2PMap&&) noexcept = default;
V2PMap& V2PMap::operator=(V2PMap&&) noexcept = default;

std::vector<MappedExtent> V2PMap::lookup(VdiskKey vdisk, VirtualOffset offset,
                                         std::uint64_t length) const {
  std::vector<MappedExtent> out;
  const VdiskState* vs = impl_->find_state(vdisk);
  if (vs == nullptr || length == 0) return out;
  const std::uint64_t v0 = offset.value(), v1 = v0 + length;
  std::vector<FwdEntry> hits;
  Impl::overlapping(vs->fwd, v0, v1, hits);
  for (const auto& e : hits) {
    out.push_back(impl_->to_public(clip(e, std::max(e.voffset, v0), std::min(e.end(), v1))));
  }
  return out;
}

std::optional<MappedExtent> V2PMap::find(VdiskKey vdisk, VirtualOffset offset) const noexcept {
  const VdiskState* vs = impl_->find_state(vdisk);
  if (vs == nullptr) return std::nullopt;
  const auto p = vs->fwd.last_le(offset.value());
  if (!p) return std::nullopt;
  const FwdEntry& e = vs->fwd.get(*p);
  if (e.end() <= offset.value()) return std::nullopt;
  return impl_->to_public(e);
}

std::size_t V2PMap::find_many(VdiskKey vdisk, std::span<const VirtualOffset> offsets,
                              std::span<std::optional<MappedExtent>> out) const noexcept {
  const std::size_t n = std::min(offsets.size(), out.size());
  const VdiskState* vs = impl_->find_state(vdisk);
  if (vs == nullptr) {
    std::fill_n(out.begin(), n, std::nullopt);
    return 0;
  }
  const Forward& f = vs->fwd;
  // Lookup i + kAhead is located (index search, leaf lines prefetched) before lookup i is
  // finished: about as many misses in flight as a core sustains, and the index work of one
  // lookup no longer sits in front of its own miss.
  constexpr std::size_t kAhead = 8;
  std::size_t leaves[kAhead];
  for (std::size_t i = 0; i < std::min(n, kAhead); ++i) leaves[i] = f.locate(offsets[i].value());
  std::size_t found = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t li = leaves[i % kAhead];
    if (i + kAhead < n) leaves[i % kAhead] = f.locate(offsets[i + kAhead].value());
    const std::uint64_t v = offsets[i].value();
    const auto p = f.last_le_located(li, v);
    if (p && f.get(*p).end() > v) {
      out[i] = impl_->to_public(f.get(*p));
      ++found;
    } else {
      out[i] = std::nullopt;
    }
  }
  return found;
}

std::vector<MappedExtent> V2PMap::extents(VdiskKey vdisk) const {
  std::vector<MappedExtent> out;
  const VdiskState* vs = impl_->find_state(vdisk);
  if (vs == nullptr) return out;
  out.reserve(vs->fwd.size());
  vs->fwd.for_each([&](const FwdEntry& e) { out.push_back(impl_->to_public(e)); });
  return out;
}

std::optional<Owner> V2PMap::whose(DeviceId device, PhysicalSector sector) const {
  const auto dev = impl_->index_of(device);
  if (!dev) return std::nullopt;
  const std::uint64_t s = sector.value();
  const Reverse& r = impl_->reverse[*dev];
  // Exclusivity: the one extent starting at or before s is the only possible owner.
  const auto p = r.last_le(rev_entry(s, kVdiskMask, std::numeric_limits<std::uint64_t>::max()));
  if (!p) return std::nullopt;
  const RevEntry& re = r.get(*p);
  const VdiskState& vs = impl_->states[re.vdisk()];
  const FwdEntry& f = vs.fwd.get(vs.fwd.lower_bound(re.voffset));
  if (s >= re.sector() + sectors_for(f.length)) return std::nullopt;
  const std::uint64_t into = (s - re.sector()) * kSector;
  return Owner{impl_->keys[re.vdisk()], VirtualOffset{f.voffset + into}, f.length - into};
}

std::vector<VdiskKey> V2PMap::vdisks() const {
  std::vector<VdiskKey> out;
  for (const auto& vs : impl_->states) {
    if (!vs.fwd.empty()) out.push_back(impl_->keys[vs.index]);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::size_t V2PMap::extent_count() const noexcept {
  return impl_->extents;
}

std::uint64_t V2PMap::mapped_bytes(VdiskKey vdisk) const noexcept {
  const VdiskState* vs = impl_->find_state(vdisk);
  return vs == nullptr ? 0 : vs->mapped;
}

std::size_t V2PMap::memory_bytes() const noexcept {
  std::size_t total = 0;
  for (const auto& vs : impl_->states) total += vs.fwd.memory_bytes();
  for (const auto& r : impl_->reverse) total += r.memory_bytes();
  return total;
}

void V2PMap::map(VdiskKey vdisk, const Mapping& m) {
  impl_->map(vdisk, m);
}

void V2PMap::unmap(VdiskKey vdisk, VirtualOffset offset, std::uint64_t length) {
  impl_->unmap(vdisk, offset.value(), offset.value() + length);
}

void V2PMap::restore(VdiskKey vdisk, const MappedExtent& e) {
  if (e.length == 0) return;
  auto& vs = impl_->state(vdisk);
  impl_->cut(vs, e.voffset.value(), e.voffset.value() + e.length);
  const FwdEntry f =
      correlator::make_entry(e.voffset.value(), e.length, e.sector.value(), impl_->intern(e.device),
                             quantize_confidence(e.confidence), e.last_seen_ns, e.generation);
  impl_->insert_coalesced(vs, f);
}

void V2PMap::restore_sorted(VdiskKey vdisk, std::span<const MappedExtent> extents) {
  const auto in_order = [&] {
    for (std::size_t i = 1; i < extents.size(); ++i) {
      const auto& a = extents[i - 1];
      if (a.voffset.value() + a.length > extents[i].voffset.value()) return false;
    }
    return true;
  };
  const VdiskState* existing = impl_->find_state(vdisk);
  if ((existing != nullptr && !existing->fwd.empty()) || !in_order()) {
    for (const auto& e : extents) restore(vdisk, e);
    return;
  }
  auto& vs = impl_->state(vdisk);
  // Forward entries, coalesced with the left neighbour exactly as insert_coalesced would.
  std::vector<FwdEntry> fwd;
  fwd.reserve(extents.size());
  for (const auto& e : extents) {
    if (e.length == 0) continue;
    const FwdEntry f = correlator::make_entry(
        e.voffset.value(), e.length, e.sector.value(), impl_->intern(e.device),
        quantize_confidence(e.confidence), e.last_seen_ns, e.generation);
    if (!fwd.empty() && mergeable(fwd.back(), f)) {
      fwd.back().length += f.length;
      touch(fwd.back(), f);
    } else {
      fwd.push_back(f);
    }
  }
  vs.fwd.assign_sorted(fwd.data(), fwd.size());
  // Reverse entries, per device: sorted, merged with what other vdisks put there, rebuilt.
  std::vector<std::vector<RevEntry>> rev(impl_->devices.size());
  for (const auto& f : fwd) {
    rev[f.dev].push_back(rev_entry(f.sector, vs.index, f.voffset));
    vs.mapped += f.length;
    impl_->max_sectors = std::max(impl_->max_sectors, sectors_for(f.length));
  }
  impl_->extents += fwd.size();
  fwd = {};
  for (std::size_t d = 0; d < rev.size(); ++d) {
    auto& add = rev[d];
    if (add.empty()) continue;
    std::sort(add.begin(), add.end());
    Reverse& r = impl_->reverse[d];
    if (!r.empty()) {
      std::vector<RevEntry> old;
      old.reserve(r.size() + add.size());
      r.for_each([&](const RevEntry& e) { old.push_back(e); });
      const auto mid = old.insert(old.end(), add.begin(), add.end());
      std::inplace_merge(old.begin(), mid, old.end());
      add = std::move(old);
    }
    r.assign_sorted(add.data(), add.size());
    add = {};
  }
}

void V2PMap::clear() noexcept {
  *impl_ = Impl{};
}

}  // namespace v2p
