// The correlator's change stream (MapWriter): what each map write reports, and that a policy's
// replica built from the stream equals the correlator's map.
#include "correlator/map_changes.hpp"

#include <gtest/gtest.h>

#include "correlator/correlator.hpp"

namespace v2p::correlator {
namespace {

const VdiskKey kDisk{VmId{1}, VdiskId{2}};
const DeviceId kDev = DeviceId::from_major_minor(8, 16);

Mapping at(std::uint64_t voffset, std::uint64_t length, std::uint64_t sector) {
  return Mapping{VirtualOffset{voffset}, length, kDev, PhysicalSector{sector}, 1, 1.0F};
}

struct Recorded {
  V2PMap map;
  MapWriter writer{map};
  std::vector<MapChange> changes;
  V2PMap replica;  // what the policy host builds from the stream
  Recorded() {
    writer.set_observer([this](const MapChange& c) {
      changes.push_back(c);
      if (c.kind == MapChangeKind::kUnmapped) {
        replica.unmap(c.vdisk, c.voffset, c.length);
      } else {
        replica.map(c.vdisk, Mapping{c.voffset, c.length, c.device, c.sector, 1, 1.0F});
      }
    });
  }
  std::vector<MapChange> take() { return std::exchange(changes, {}); }
};

std::string describe(const std::vector<MapChange>& cs) {
  std::string out;
  for (const auto& c : cs) {
    out += std::to_string(static_cast<int>(c.kind)) + ":" + std::to_string(c.voffset.value()) +
           "+" + std::to_string(c.length) + "@" + std::to_string(c.sector.value()) + "g" +
           std::to_string(c.generation) + " ";
  }
  return out;
}

TEST(MapChanges, FirstSightSameplaceRelocationAndUnmap) {
  Recorded r;
  r.writer.map(kDisk, at(0, 8192, 100));
  EXPECT_EQ(describe(r.take()), "0:0+8192@100g1 ");
  r.writer.map(kDisk, at(0, 8192, 100));  // seen again in place: nothing changed
  EXPECT_EQ(describe(r.take()), "");
  r.writer.map(kDisk, at(4096, 8192, 500));  // half moves (copy-on-write), half is new
  EXPECT_EQ(describe(r.take()), "1:4096+4096@500g2 0:8192+4096@508g2 ");
  r.writer.unmap(kDisk, VirtualOffset{0}, 8192);
  EXPECT_EQ(describe(r.take()), "2:0+4096@100g1 2:4096+4096@500g2 ");
  EXPECT_EQ(r.replica.extents(kDisk), r.map.extents(kDisk));
}

TEST(MapChanges, WithoutAnObserverTheMapIsWrittenAlike) {
  V2PMap plain;
  MapWriter w(plain);
  w.map(kDisk, at(0, 4096, 8));
  w.unmap(kDisk, VirtualOffset{0}, 1024);
  ASSERT_EQ(plain.extents(kDisk).size(), 1u);
  EXPECT_EQ(plain.extents(kDisk)[0].voffset.value(), 1024u);
}

TEST(MapChanges, CorrelatorReportsADiscardToItsSubscriber) {
  Correlator c;
  c.declare({1, 2, "vm", "disk", "/img"});
  c.mutable_map().map(kDisk, at(0, 65536, 64));
  std::vector<MapChange> seen;
  c.set_change_observer([&](const MapChange& m) { seen.push_back(m); });
  ContextRecord r;
  r.vm_id = 1;
  r.vdisk_id = 2;
  r.voffset = 0;
  r.length = 4096;
  r.op = static_cast<std::uint8_t>(IoOp::kDiscard);
  r.submit_ns = 10;
  r.complete_ns = 20;
  c.on_record(r);  // untagged discard: the correlator unmaps at once
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].kind, MapChangeKind::kUnmapped);
  EXPECT_EQ(seen[0].length, 4096u);
  EXPECT_EQ(seen[0].sector.value(), 64u);
  EXPECT_EQ(c.map().mapped_bytes(kDisk), 65536u - 4096u);
}

}  // namespace
}  // namespace v2p::correlator
