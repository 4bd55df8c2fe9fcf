// The reference twin of V2PMap: one cell per 512-byte virtual sector, no coalescing, no cleverness.
// The real map must always equal this twin with maximal runs coalesced (tests/correlator/map_test).
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "correlator/extent_entry.hpp"
#include "v2p/map.hpp"

namespace v2p::testing {

class ReferenceMap {
 public:
  struct Cell {
    DeviceId dev;
    std::uint64_t psec = 0;
    std::uint32_t gen = 0;
    std::uint16_t conf_q = 0;
  };

  // All in sectors.
  void map(VdiskKey k, std::uint64_t v, std::uint64_t n, DeviceId dev, std::uint64_t p,
           float conf) {
    const std::uint16_t q = correlator::quantize_confidence(conf);
    std::vector<Cell> fresh(n);
    for (std::uint64_t i = 0; i < n; ++i) {
      const auto it = fwd_.find({k, v + i});
      Cell c{dev, p + i, 1, q};
      if (it != fwd_.end()) {
        const bool same = it->second.dev == dev && it->second.psec == p + i;
        c.gen = same ? it->second.gen : it->second.gen + 1;
        c.conf_q = same ? std::max(it->second.conf_q, q) : q;
      }
      fresh[i] = c;
    }
    unmap(k, v, n);
    for (std::uint64_t i = 0; i < n; ++i) {
      const auto owner = rev_.find({dev.kernel(), p + i});
      if (owner != rev_.end()) {
        const auto [ok, ov] = owner->second;
        fwd_.erase({ok, ov});
        rev_.erase(owner);
      }
    }
    for (std::uint64_t i = 0; i < n; ++i) {
      fwd_[{k, v + i}] = fresh[i];
      rev_[{dev.kernel(), p + i}] = {k, v + i};
    }
  }

  void unmap(VdiskKey k, std::uint64_t v, std::uint64_t n) {
    for (std::uint64_t i = 0; i < n; ++i) {
      const auto it = fwd_.find({k, v + i});
      if (it == fwd_.end()) continue;
      rev_.erase({it->second.dev.kernel(), it->second.psec});
      fwd_.erase(it);
    }
  }

  // Maximal coalescible runs, as V2PMap::extents reports them (last_seen left at 0).
  std::vector<MappedExtent> extents(VdiskKey k) const {
    std::vector<MappedExtent> out;
    std::uint64_t prev_v = 0;
    Cell prev{};
    for (auto it = fwd_.lower_bound({k, 0}); it != fwd_.end() && it->first.first == k; ++it) {
      const auto v = it->first.second;
      const Cell& c = it->second;
      const bool extend = !out.empty() && v == prev_v + 1 && c.dev == prev.dev &&
                          c.psec == prev.psec + 1 && c.gen == prev.gen && c.conf_q == prev.conf_q;
      if (extend) {
        out.back().length += correlator::kSector;
      } else {
        out.push_back({VirtualOffset{v * correlator::kSector}, correlator::kSector, c.dev,
                       PhysicalSector{c.psec}, c.gen, 0, correlator::confidence_of(c.conf_q)});
      }
      prev_v = v;
      prev = c;
    }
    return out;
  }

  std::optional<std::pair<VdiskKey, std::uint64_t>> whose(DeviceId dev, std::uint64_t p) const {
    const auto it = rev_.find({dev.kernel(), p});
    if (it == rev_.end()) return std::nullopt;
    return it->second;
  }

  std::size_t mapped_sectors(VdiskKey k) const {
    std::size_t n = 0;
    for (auto it = fwd_.lower_bound({k, 0}); it != fwd_.end() && it->first.first == k; ++it) ++n;
    return n;
  }

 private:
  std::map<std::pair<VdiskKey, std::uint64_t>, Cell> fwd_;
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::pair<VdiskKey, std::uint64_t>> rev_;
};

}  // namespace v2p::testing
