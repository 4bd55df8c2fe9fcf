#include "correlator/map_changes.hpp"

#include <algorithm>

namespace v2p::correlator {

void MapWriter::map(VdiskKey vdisk, const Mapping& m) {
  if (!observer_) {
    map_.map(vdisk, m);
    return;
  }
  const auto before = map_.lookup(vdisk, m.voffset, m.length);
  map_.map(vdisk, m);
  const auto now = map_.find(vdisk, m.voffset);
  const std::uint64_t generation = now ? now->generation : 0;
  const std::uint64_t begin = m.voffset.value();
  const std::uint64_t end = begin + m.length;
  // The new place of [a, b) inside the written range.
  const auto report = [&](MapChangeKind kind, std::uint64_t a, std::uint64_t b) {
    if (a >= b) return;
    MapChange c;
    c.kind = kind;
    c.vdisk = vdisk;
    c.voffset = VirtualOffset{a};
    c.length = b - a;
    c.device = m.device;
    c.sector = PhysicalSector{m.sector.value() + (a - begin) / kSectorSize};
    c.generation = generation;
    observer_(c);
  };
  std::uint64_t cursor = begin;
  for (const auto& piece : before) {  // clipped to the range, ordered by voffset
    const std::uint64_t a = piece.voffset.value();
    const std::uint64_t b = std::min(end, a + piece.length);
    report(MapChangeKind::kMapped, cursor, a);
    const bool in_place = piece.device == m.device &&
                          piece.sector.value() == m.sector.value() + (a - begin) / kSectorSize;
    if (!in_place) report(MapChangeKind::kRelocated, a, b);
    cursor = std::max(cursor, b);
  }
  report(MapChangeKind::kMapped, cursor, end);
}

void MapWriter::unmap(VdiskKey vdisk, VirtualOffset offset, std::uint64_t length) {
  if (!observer_) {
    map_.unmap(vdisk, offset, length);
    return;
  }
  const auto before = map_.lookup(vdisk, offset, length);
  map_.unmap(vdisk, offset, length);
  for (const auto& piece : before) {
    MapChange c;
    c.kind = MapChangeKind::kUnmapped;
    c.vdisk = vdisk;
    c.voffset = piece.voffset;
    c.length = piece.length;
    c.device = piece.device;
    c.sector = piece.sector;
    c.generation = piece.generation;
    observer_(c);
  }
}

}  // namespace v2p::correlator
