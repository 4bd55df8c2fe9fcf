// The correlator's writes to the V2P map, reported as a change stream (v2p::MapChange) for
// whoever subscribes: the policy host (on_map_change) keeps its replica of the map with it.
// The joins write through a MapWriter instead of the V2PMap itself; without an observer a write
// costs what it did before (one branch).
//
// What is reported, per write:
//  - map(): kMapped for the parts of the range the vdisk had nowhere before, kRelocated for the
//    parts it had at another place (copy-on-write), nothing for the parts seen again in place.
//  - unmap(): kUnmapped for each part that was mapped, with the place it had.
// Ranges another owner loses because its sectors were reused (physical exclusivity) are not
// reported separately: the new owner's kMapped/kRelocated names the same sectors, and applying
// the stream to a V2PMap evicts them the same way.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

#include "v2p/map.hpp"
#include "v2p/policy.hpp"

namespace v2p::correlator {

using MapChangeObserver = std::function<void(const MapChange&)>;

class MapWriter {
 public:
  explicit MapWriter(V2PMap& map) : map_(map) {}

  void set_observer(MapChangeObserver observer) { observer_ = std::move(observer); }

  void map(VdiskKey vdisk, const Mapping& m);
  void unmap(VdiskKey vdisk, VirtualOffset offset, std::uint64_t length);
  [[nodiscard]] std::optional<MappedExtent> find(VdiskKey vdisk,
                                                 VirtualOffset offset) const noexcept {
    return map_.find(vdisk, offset);
  }

 private:
  V2PMap& map_;
  MapChangeObserver observer_;
};

}  // namespace v2p::correlator
