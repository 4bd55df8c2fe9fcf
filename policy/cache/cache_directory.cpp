#include "policy/cache/cache_directory.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <tuple>

namespace v2p::cache {

CacheDirectory::CacheDirectory(Options options)
    : opts_(options), meta_(options.slots), sketch_(std::max<std::uint32_t>(options.slots, 1)) {
  free_.reserve(opts_.slots);
  for (std::uint32_t i = opts_.slots; i-- > 0;) free_.push_back(i);
}

std::uint32_t CacheDirectory::vm(std::string_view name) {
  if (auto it = vm_by_name_.find(name); it != vm_by_name_.end()) return it->second;
  const std::string key(name);
  const auto id = static_cast<std::uint32_t>(vms_.size());
  vms_.push_back(Vm{key, 0, 0, kNone, kNone, {}});
  vm_by_name_.emplace(key, id);
  return id;
}

std::optional<std::uint32_t> CacheDirectory::find_vm(std::string_view name) const {
  const auto it = vm_by_name_.find(name);
  if (it == vm_by_name_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> CacheDirectory::vm_names() const {
  std::vector<std::string> out;
  for (const auto& v : vms_) out.push_back(v.name);
  return out;
}

CacheVmStats CacheDirectory::stats(std::uint32_t vm) const {
  CacheVmStats s = vms_.at(vm).stats;
  s.quota_bytes = vms_[vm].quota;
  s.priority = vms_[vm].priority;
  return s;
}

void CacheDirectory::set_quota(std::uint32_t vm, std::uint64_t bytes) {
  auto& v = vms_.at(vm);
  v.quota = bytes;
  // Least recently used first; a pinned entry is doomed (freed when its reader is done).
  while (over_quota(v, 0) && v.tail != kNone) {
    ++v.stats.evictions;
    remove(v.tail);
  }
  // Fills in flight are abandoned too: the quota holds from now on.
  for (std::uint32_t s = 0; s < meta_.size() && over_quota(v, 0); ++s) {
    if (meta_[s].state == SlotState::kFilling && meta_[s].owner == vm) remove(s);
  }
}

void CacheDirectory::set_priority(std::uint32_t vm, int priority) {
  vms_.at(vm).priority = priority;
}

std::optional<CacheDirectory::Found> CacheDirectory::find(const CacheKey& key) const {
  const auto it = index_.find(key);
  if (it == index_.end()) return std::nullopt;
  return Found{CacheSlot(it->second), meta_[it->second].state};
}

void CacheDirectory::link_front(std::uint32_t s) {
  auto& m = meta_[s];
  auto& v = vms_[m.owner];
  m.prev = kNone;
  m.next = v.head;
  if (v.head != kNone) meta_[v.head].prev = s;
  v.head = s;
  if (v.tail == kNone) v.tail = s;
}

void CacheDirectory::unlink(std::uint32_t s) {
  auto& m = meta_[s];
  auto& v = vms_[m.owner];
  if (m.prev != kNone)
    meta_[m.prev].next = m.next;
  else
    v.head = m.next;
  if (m.next != kNone)
    meta_[m.next].prev = m.prev;
  else
    v.tail = m.prev;
  m.prev = m.next = kNone;
}

void CacheDirectory::charge(std::uint32_t s) {
  auto& m = meta_[s];
  vms_[m.owner].stats.resident_bytes += m.length;
  m.charged = true;
}

void CacheDirectory::uncharge(std::uint32_t s) {
  auto& m = meta_[s];
  if (!m.charged) return;
  vms_[m.owner].stats.resident_bytes -= m.length;
  m.charged = false;
}

void CacheDirectory::remove(std::uint32_t s) {
  auto& m = meta_[s];
  index_.erase(m.key);
  uncharge(s);
  if (m.state == SlotState::kValid) {
    unlink(s);
    if (m.pins == 0) {
      m.state = SlotState::kFree;
      free_.push_back(s);
    } else {
      m.state = SlotState::kDoomed;
    }
  } else if (m.state == SlotState::kFilling) {
    m.state = SlotState::kDoomed;
  }
}

void CacheDirectory::hit(CacheSlot slot, std::uint32_t vm, std::uint64_t bytes) {
  const std::uint32_t s = slot.value();
  auto& v = vms_.at(vm);
  ++v.stats.hits;
  v.stats.bytes_from_flash += bytes;
  auto& m = meta_[s];
  sketch_.increment(key_hash(m.key));
  m.last_access = ++clock_;
  if (m.state == SlotState::kValid && vms_[m.owner].head != s) {
    unlink(s);
    link_front(s);
  }
}

void CacheDirectory::uncacheable_miss(std::uint32_t vm) {
  ++vms_.at(vm).stats.misses;
}

std::uint32_t CacheDirectory::unpinned_tail(std::uint32_t vm) const {
  std::uint32_t s = vms_[vm].tail;
  for (int steps = 0; s != kNone && steps < 16; ++steps, s = meta_[s].prev) {
    if (meta_[s].pins == 0) return s;
  }
  return kNone;
}

std::uint32_t CacheDirectory::choose_slot(std::uint32_t vm, std::uint32_t length) const {
  const Vm& x = vms_[vm];
  if (over_quota(x, length)) return unpinned_tail(vm);  // only its own entries make room
  if (!free_.empty()) return free_.back();
  // Full: over-quota VMs first, then the lowest priority, then the least recently used; never
  // a VM with a higher priority than the one asking.
  std::uint32_t best = kNone;
  std::tuple<int, int, std::uint64_t> best_rank{};
  for (std::uint32_t i = 0; i < vms_.size(); ++i) {
    if (i != vm && vms_[i].priority > x.priority) continue;
    const std::uint32_t t = unpinned_tail(i);
    if (t == kNone) continue;
    const std::tuple<int, int, std::uint64_t> rank{over_quota(vms_[i], 0) ? 0 : 1, vms_[i].priority,
                                                   meta_[t].last_access};
    if (best == kNone || rank < best_rank) {
      best = t;
      best_rank = rank;
    }
  }
  return best;
}

std::optional<CacheDirectory::Fill> CacheDirectory::miss(std::uint32_t vm, const CacheKey& key,
                                                         std::uint32_t length, Admission hint,
                                                         bool count) {
  auto& v = vms_.at(vm);
  if (count) ++v.stats.misses;
  const std::uint64_t h = key_hash(key);
  sketch_.increment(h);
  if (index_.contains(key)) return std::nullopt;  // someone else is filling it
  if (hint == Admission::kBypass || length == 0 || length > opts_.block_bytes) {
    ++v.stats.rejected;
    return std::nullopt;
  }
  const bool filter = hint != Admission::kAdmit && opts_.filter == AdmissionFilter::kFrequency;
  const unsigned freq = sketch_.estimate(h);
  if (filter && freq < opts_.min_frequency) {
    ++v.stats.rejected;
    return std::nullopt;
  }
  const std::uint32_t s = choose_slot(vm, length);
  if (s == kNone) {
    ++v.stats.rejected;
    return std::nullopt;
  }
  auto& m = meta_[s];
  Fill fill{CacheSlot(s), 0, std::nullopt};
  if (m.state == SlotState::kValid) {
    // TinyLFU: the newcomer must have been wanted more often than the entry it would replace.
    if (filter && freq <= sketch_.estimate(key_hash(m.key))) {
      ++v.stats.rejected;
      return std::nullopt;
    }
    fill.evicted = m.key;
    ++vms_[m.owner].stats.evictions;
    remove(s);  // unpinned, so it is kFree now and on free_
  }
  free_.erase(std::find(free_.rbegin(), free_.rend(), s).base() - 1);
  m.key = key;
  m.owner = vm;
  m.length = length;
  m.generation = generation_++;
  m.last_access = ++clock_;
  m.state = SlotState::kFilling;
  m.pins = 0;
  charge(s);
  index_[key] = s;
  fill.generation = m.generation;
  return fill;
}

bool CacheDirectory::complete_fill(CacheSlot slot) {
  const std::uint32_t s = slot.value();
  auto& m = meta_[s];
  if (m.state == SlotState::kFilling) {
    m.state = SlotState::kValid;
    link_front(s);
    ++vms_[m.owner].stats.fills;
    return true;
  }
  if (m.state == SlotState::kDoomed) {
    m.state = SlotState::kFree;
    free_.push_back(s);
  }
  return false;
}

void CacheDirectory::abort_fill(CacheSlot slot) {
  const std::uint32_t s = slot.value();
  auto& m = meta_[s];
  if (m.state == SlotState::kFilling) remove(s);
  if (m.state == SlotState::kDoomed) {
    m.state = SlotState::kFree;
    free_.push_back(s);
  }
}

void CacheDirectory::pin(CacheSlot slot) {
  ++meta_[slot.value()].pins;
}

void CacheDirectory::unpin(CacheSlot slot) {
  auto& m = meta_[slot.value()];
  if (--m.pins == 0 && m.state == SlotState::kDoomed) {
    m.state = SlotState::kFree;
    free_.push_back(slot.value());
  }
}

std::uint64_t CacheDirectory::drop_range(DeviceId device, PhysicalSector sector,
                                         std::uint64_t sectors) {
  const std::uint64_t span = opts_.block_bytes / kSectorSize;
  const std::uint64_t lo = sector.value() > span ? sector.value() - span : 0;
  const std::uint64_t end = sector.value() + sectors;
  std::vector<std::uint32_t> hit;
  for (auto it = index_.lower_bound(CacheKey{device, PhysicalSector(lo)});
       it != index_.end() && it->first.device == device && it->first.sector.value() < end; ++it) {
    const auto& m = meta_[it->second];
    const std::uint64_t k = it->first.sector.value();
    if (k + (m.length + kSectorSize - 1) / kSectorSize > sector.value()) hit.push_back(it->second);
  }
  for (const std::uint32_t s : hit) remove(s);
  return hit.size();
}

void CacheDirectory::drop_corrupt(CacheSlot slot, std::uint32_t vm) {
  const std::uint32_t s = slot.value();
  ++vms_.at(vm).stats.corrupt;
  if (meta_[s].state == SlotState::kValid || meta_[s].state == SlotState::kFilling) remove(s);
}

bool CacheDirectory::restore(CacheSlot slot, const CacheKey& key, std::string_view vm_name,
                             std::uint32_t length, std::uint64_t generation) {
  const std::uint32_t s = slot.value();
  if (s >= meta_.size() || meta_[s].state != SlotState::kFree || length == 0 ||
      length > opts_.block_bytes) {
    return false;
  }
  if (auto it = index_.find(key); it != index_.end()) {
    if (meta_[it->second].generation >= generation) return false;
    remove(it->second);
  }
  const std::uint32_t owner = vm(vm_name);
  free_.erase(std::find(free_.rbegin(), free_.rend(), s).base() - 1);
  auto& m = meta_[s];
  m.key = key;
  m.owner = owner;
  m.length = length;
  m.generation = generation;
  m.last_access = ++clock_;
  m.state = SlotState::kValid;
  m.pins = 0;
  charge(s);
  link_front(s);
  index_[key] = s;
  generation_ = std::max(generation_, generation + 1);
  return true;
}

std::vector<CacheSlot> CacheDirectory::valid_slots() const {
  std::vector<CacheSlot> out;
  for (std::uint32_t i = 0; i < meta_.size(); ++i) {
    if (meta_[i].state == SlotState::kValid) out.emplace_back(i);
  }
  return out;
}

std::vector<CacheKey> CacheDirectory::keys() const {
  std::vector<CacheKey> out;
  out.reserve(index_.size());
  for (const auto& [k, s] : index_) out.push_back(k);
  return out;
}

std::optional<std::string> CacheDirectory::check() const {
  std::vector<std::uint64_t> resident(vms_.size(), 0);
  std::size_t indexed = 0, free_count = 0;
  for (std::uint32_t i = 0; i < meta_.size(); ++i) {
    const auto& m = meta_[i];
    if (m.state == SlotState::kFree) ++free_count;
    if (m.state == SlotState::kValid || m.state == SlotState::kFilling) {
      ++indexed;
      const auto it = index_.find(m.key);
      if (it == index_.end() || it->second != i) return fmt::format("slot {} not indexed", i);
      if (!m.charged) return fmt::format("slot {} not charged", i);
      resident[m.owner] += m.length;
    } else if (m.charged) {
      return fmt::format("slot {} charged in state {}", i, int(m.state));
    }
  }
  if (indexed != index_.size()) return "index holds entries of no live slot";
  if (free_count != free_.size()) return "free list and slot states disagree";
  for (std::uint32_t v = 0; v < vms_.size(); ++v) {
    if (resident[v] != vms_[v].stats.resident_bytes)
      return fmt::format("vm {} resident {} != {}", vms_[v].name, vms_[v].stats.resident_bytes,
                         resident[v]);
    if (vms_[v].quota != 0 && resident[v] > vms_[v].quota)
      return fmt::format("vm {} holds {} over its quota {}", vms_[v].name, resident[v],
                         vms_[v].quota);
    std::uint32_t prev = kNone;
    for (std::uint32_t s = vms_[v].head; s != kNone; prev = s, s = meta_[s].next) {
      if (meta_[s].state != SlotState::kValid || meta_[s].owner != v)
        return fmt::format("vm {} list holds slot {}", vms_[v].name, s);
      if (meta_[s].prev != prev) return "broken LRU back link";
    }
    if (vms_[v].tail != prev) return "LRU tail is not the last element";
  }
  return std::nullopt;
}

}  // namespace v2p::cache
