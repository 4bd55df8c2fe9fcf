#include "correlator/snapshot.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include "common/error.hpp"
#include "common/record_file.hpp"
#include "correlator/replay.hpp"
#include "correlator/sim/host_fs_sim.hpp"

namespace v2p::correlator {
namespace {

std::filesystem::path tmp(const std::string& name) {
  return std::filesystem::temp_directory_path() /
         ("v2p-snap-" + std::to_string(::getpid()) + "-" + name);
}

void expect_same_maps(const V2PMap& a, const V2PMap& b) {
  ASSERT_EQ(a.vdisks(), b.vdisks());
  for (const auto key : a.vdisks()) EXPECT_EQ(a.extents(key), b.extents(key));
}

// A simulated run shifted to start `offset_ns` later.
sim::SimOutput shifted_sim(std::uint64_t seed, std::uint64_t offset_ns) {
  sim::SimOptions o;
  o.seed = seed;
  o.copy_on_write = true;
  auto out = sim::simulate(o);
  for (auto& d : out.deliveries) {
    d.at_ns += offset_ns;
    d.record.submit_ns += offset_ns;
    d.record.complete_ns += offset_ns;
    d.event.ts_ns += offset_ns;
  }
  return out;
}

TEST(Snapshot, RoundTripsExactly) {
  const auto s1 = shifted_sim(3, 0);
  const auto f1 = tmp("a.v2ps");
  sim::write_stream(s1, f1);
  Correlator c;
  c.add_backend_process(77);
  replay_streams(c, {f1});
  ASSERT_GT(c.map().extent_count(), 100u);
  const auto bytes = encode_snapshot(snapshot_of(c));
  const auto back = decode_snapshot(bytes);
  expect_same_maps(back.map, c.map());
  EXPECT_EQ(back.as_of_ns, c.watermark_ns());
  EXPECT_EQ(back.backends, std::vector<std::uint32_t>{77});
  ASSERT_EQ(back.declarations.size(), 2u);
  EXPECT_EQ(back.declarations[1].vm_name, "vm2");

  const auto file = tmp("map.v2pmap");
  save_snapshot(c, file);
  Correlator restored;
  restore_snapshot(restored, load_snapshot(file));
  expect_same_maps(restored.map(), c.map());
  EXPECT_EQ(restored.vdisk(VdiskKey{VmId{1}, VdiskId{1}})->image_path, "/sim/vm1.raw");
  std::filesystem::remove(file);
  std::filesystem::remove(f1);
}

TEST(Snapshot, CorruptionAndTruncationAreRefused) {
  Correlator c;
  c.mutable_map().map(
      {VmId{1}, VdiskId{1}},
      {VirtualOffset{0}, 4096, DeviceId::from_major_minor(7, 0), PhysicalSector{8}, 5, 1.0f});
  auto bytes = encode_snapshot(snapshot_of(c));
  for (std::size_t cut = 0; cut < bytes.size(); cut += 7) {
    EXPECT_THROW(decode_snapshot(std::span(bytes).first(cut)), Error) << cut;
  }
  bytes[30] ^= std::byte{1};
  EXPECT_THROW(decode_snapshot(bytes), Error);
}

// A restart: snapshot after the first stream, restore, replay both streams from the snapshot's
// time; the map equals the one of a correlator that never stopped.
TEST(Snapshot, RestartThenReplayEqualsUninterruptedRun) {
  const auto s1 = shifted_sim(11, 0);
  const auto s2 = shifted_sim(12, 60'000'000'000ULL);
  const auto f1 = tmp("1.v2ps"), f2 = tmp("2.v2ps");
  sim::write_stream(s1, f1);
  sim::write_stream(s2, f2);

  Correlator uninterrupted;
  replay_streams(uninterrupted, {f1, f2});

  Correlator first;
  replay_streams(first, {f1});
  const auto snap = tmp("restart.v2pmap");
  save_snapshot(first, snap);

  Correlator second;
  const auto loaded = load_snapshot(snap);
  restore_snapshot(second, loaded);
  const auto res = replay_streams(second, {f1, f2}, loaded.as_of_ns);
  EXPECT_GT(res.skipped, 0u);
  expect_same_maps(second.map(), uninterrupted.map());
  for (const auto& p : {f1, f2, snap}) std::filesystem::remove(p);
}

TEST(Replay, SeparateRecordAndEventFilesEqualOneInterleavedFile) {
  const auto s = shifted_sim(21, 0);
  const auto both = tmp("both.v2ps"), recs = tmp("recs.v2ps"), evs = tmp("evs.v2ps");
  sim::write_stream(s, both);
  {
    StreamWriter r(recs), e(evs);
    for (const auto& d : s.declarations) r.write(d);
    for (const auto& d : s.deliveries) {
      if (d.is_record) {
        r.write(d.record);
      } else {
        e.write(d.event);
      }
    }
  }
  Correlator a, b;
  replay_streams(a, {both});
  replay_streams(b, {evs, recs});
  expect_same_maps(a.map(), b.map());
  EXPECT_EQ(a.stats().joined_exact, b.stats().joined_exact);
  ASSERT_EQ(b.vdisk_declarations().size(), 2u);
  for (const auto& p : {both, recs, evs}) std::filesystem::remove(p);
}

}  // namespace
}  // namespace v2p::correlator
