// The V2P map: per vdisk, which physical sectors hold which virtual bytes, and the reverse.
// It is the correlator's output and what policies query. Public SDK header: self-contained.
//
// Semantics (docs/correlator.md has the long form):
//  - A mapping says the bytes [voffset, voffset + length) of a vdisk live at `sector` on `device`.
//  - Adjacent mappings that are virtually and physically contiguous on the same device, with the
//    same generation and confidence, are one extent: a contiguous vdisk is one extent.
//  - Physical exclusivity: a physical sector has at most one owner. Mapping a range evicts any
//    other vdisk range (or other offset of the same vdisk) that claimed those sectors before,
//    because the newer observation means the file system reused them.
//  - generation counts relocations of a range: 1 when first seen, +1 each time the range is seen
//    at a different place (copy-on-write), unchanged when seen again at the same place.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "v2p/export.hpp"
#include "v2p/types.hpp"

namespace v2p {

struct MappedExtent {
  VirtualOffset voffset;
  std::uint64_t length = 0;  // bytes
  DeviceId device;
  PhysicalSector sector;
  std::uint64_t generation = 0;
  std::uint64_t last_seen_ns = 0;  // newest observation of any part of the extent
  float confidence = 0;            // 1 = joined by tag; < 1 = joined by completion window

  friend bool operator==(const MappedExtent&, const MappedExtent&) = default;
};

struct Owner {
  VdiskKey vdisk;
  VirtualOffset voffset;  // the byte of the vdisk stored at the queried sector
  std::uint64_t length;   // bytes of the owning extent piece from voffset to its end
};

// One observation to record in the map.
struct Mapping {
  VirtualOffset voffset;
  std::uint64_t length = 0;
  DeviceId device;
  PhysicalSector sector;
  std::uint64_t seen_ns = 0;
  float confidence = 1;
};

// Thread-compatible: concurrent const calls are safe, a mutator needs exclusive access (the
// Correlator serialises them). Copyable (deep copy) and movable.
class V2P_API V2PMap {
 public:
  V2PMap();
  ~V2PMap();
  V2PMap(const V2PMap& other);
  V2PMap& operator=(const V2PMap& other);
  V2PMap(V2PMap&&) noexcept;
  V2PMap& operator=(V2PMap&&) noexcept;

  // The extent pieces overlapping [offset, offset + length), clipped to it, by voffset.
  std::vector<MappedExtent> lookup(VdiskKey vdisk, VirtualOffset offset,
                                   std::uint64_t length) const;
  // The extent containing `offset`, unclipped; no allocation (the point-lookup fast path).
  std::optional<MappedExtent> find(VdiskKey vdisk, VirtualOffset offset) const noexcept;
  // Many point lookups in one vdisk: out[i] = find(vdisk, offsets[i]) for i < min(offsets.size(),
  // out.size()); returns how many were found. For scattered offsets (a policy checking a batch of
  // candidate blocks) it is faster than find in a loop: it prefetches the leaves of the next
  // lookups while finishing the current one, so their cache misses overlap.
  std::size_t find_many(VdiskKey vdisk, std::span<const VirtualOffset> offsets,
                        std::span<std::optional<MappedExtent>> out) const noexcept;
  // Every extent of the vdisk, ordered by voffset.
  std::vector<MappedExtent> extents(VdiskKey vdisk) const;
  // Which vdisk byte lives at `sector` of `device`, if any.
  std::optional<Owner> whose(DeviceId device, PhysicalSector sector) const;
  // Vdisks with at least one extent, ordered.
  std::vector<VdiskKey> vdisks() const;
  std::size_t extent_count() const noexcept;
  std::uint64_t mapped_bytes(VdiskKey vdisk) const noexcept;
  // Heap bytes the map holds (extent storage, reverse index, node and index overhead).
  std::size_t memory_bytes() const noexcept;

  // Records an observation (see the semantics above).
  void map(VdiskKey vdisk, const Mapping& m);
  // Forgets the mapping of [offset, offset + length) (TRIM, discard, punched write-zeroes).
  void unmap(VdiskKey vdisk, VirtualOffset offset, std::uint64_t length);
  // Restores an extent exactly as stored (snapshot load): no generation or coalescing logic
  // beyond merging with an identical-attribute neighbour.
  void restore(VdiskKey vdisk, const MappedExtent& e);
  // Restores a whole vdisk at once from extents in increasing, non-overlapping voffset order
  // (how snapshots store them): the same map as restore() of each in turn, built in one pass.
  // Falls back to restore() one by one when the vdisk already holds extents or the input is not
  // in that order.
  void restore_sorted(VdiskKey vdisk, std::span<const MappedExtent> extents);
  void clear() noexcept;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace v2p
