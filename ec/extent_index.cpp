#include "ec/extent_index.hpp"

#include <algorithm>

namespace v2p::ec {

void ExtentIndex::insert(VdiskKey key, std::uint64_t container, const BlockRef& block) {
  auto& m = maps_[key];
  const std::uint64_t s = block.voffset, e = block.voffset + block.length;
  auto it = m.lower_bound(s);
  if (it != m.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second.length > s) it = prev;
  }
  while (it != m.end() && it->first < e) {
    const std::uint64_t xs = it->first, xe = xs + it->second.length;
    const Extent x = it->second;
    it = m.erase(it);
    if (xs < s) m.emplace(xs, Extent{s - xs, x.container, x.block, x.skip});
    if (xe > e) {
      it = m.emplace(e, Extent{xe - e, x.container, x.block,
                               x.skip + static_cast<std::uint32_t>(e - xs)})
               .first;
      break;
    }
  }
  m.emplace(s, Extent{block.length, container, block, 0});
}

std::vector<Piece> ExtentIndex::lookup(VdiskKey key, std::uint64_t voffset,
                                       std::uint64_t length) const {
  std::vector<Piece> out;
  const auto found = maps_.find(key);
  if (found == maps_.end() || length == 0) return out;
  const auto& m = found->second;
  const std::uint64_t s = voffset, e = voffset + length;
  auto it = m.upper_bound(s);
  if (it != m.begin()) --it;
  for (; it != m.end() && it->first < e; ++it) {
    const std::uint64_t xs = it->first, xe = xs + it->second.length;
    if (xe <= s) continue;
    const std::uint64_t cs = std::max(xs, s), ce = std::min(xe, e);
    out.push_back({cs, ce - cs, it->second.container, it->second.block,
                   it->second.skip + static_cast<std::uint32_t>(cs - xs)});
  }
  return out;
}

std::uint64_t ExtentIndex::live_bytes(VdiskKey key) const {
  std::uint64_t n = 0;
  const auto found = maps_.find(key);
  if (found == maps_.end()) return 0;
  for (const auto& [start, x] : found->second) n += x.length;
  return n;
}

std::vector<VdiskKey> ExtentIndex::vdisks() const {
  std::vector<VdiskKey> out;
  for (const auto& [k, m] : maps_) out.push_back(k);
  return out;
}

}  // namespace v2p::ec
