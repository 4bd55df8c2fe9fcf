// The map subcommands end to end through the real `v2p` binary ($V2P_BINARY).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/loop_filesystem.hpp"
#include "common/record_file.hpp"
#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "correlator/image_layout.hpp"
#include "correlator/replay.hpp"
#include "correlator/sim/host_fs_sim.hpp"
#include "v2p/tag.hpp"

namespace v2p::correlator {
namespace {

std::string binary() {
  const char* b = std::getenv("V2P_BINARY");
  return b ? b : "v2p";
}

std::filesystem::path tmp(const std::string& name) {
  return std::filesystem::temp_directory_path() /
         ("v2p-cli-" + std::to_string(::getpid()) + "-" + name);
}

class MapCli : public ::testing::Test {
 protected:
  void SetUp() override {
    sim::SimOptions o;
    o.seed = 5;
    sim_ = sim::simulate(o);
    stream_ = tmp("sim.v2ps");
    sim::write_stream(sim_, stream_);
  }
  void TearDown() override { std::filesystem::remove(stream_); }
  sim::SimOutput sim_;
  std::filesystem::path stream_;
};

TEST_F(MapCli, JsonMatchesTheLibrary) {
  const auto r =
      run_command({binary(), "map", "--stream", stream_.string(), "--json", "--vm", "vm1"});
  ASSERT_TRUE(r.ok()) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["vdisks"].size(), 1u);
  Correlator c;
  replay_streams(c, {stream_});
  const auto extents = c.map().extents(sim_.tagged[0]);
  ASSERT_EQ(j["vdisks"][0]["extents"].size(), extents.size());
  EXPECT_EQ(j["vdisks"][0]["vm"], "vm1");
  EXPECT_EQ(j["vdisks"][0]["extents"][0]["sector"].get<std::uint64_t>(), extents[0].sector.value());
  EXPECT_EQ(j["stats"]["joined_exact"].get<std::uint64_t>(), c.stats().joined_exact);
}

TEST_F(MapCli, WhoseFindsTheOwnerAndSaysWhenThereIsNone) {
  const auto& [vb, pb] = *sim_.truth.at(sim_.tagged[1]).begin();
  auto r = run_command(
      {binary(), "whose", "7:0", std::to_string(pb * 8 + 1), "--stream", stream_.string()});
  ASSERT_TRUE(r.ok()) << r.out << r.err;
  EXPECT_NE(r.out.find("vm2/disk0"), std::string::npos) << r.out;
  char want[64];
  std::snprintf(want, sizeof want, "voffset %#llx",
                static_cast<unsigned long long>(vb * 4096 + 512));
  EXPECT_NE(r.out.find(want), std::string::npos) << r.out;
  r = run_command({binary(), "whose", "7:0", "3", "--stream", stream_.string()});  // journal area
  EXPECT_EQ(r.exit_code, 1) << r.out;
}

TEST_F(MapCli, SnapshotSavedByOneRunIsLoadedByTheNext) {
  const auto snap = tmp("map.v2pmap");
  const auto a = run_command(
      {binary(), "map", "--stream", stream_.string(), "--json", "--save-snapshot", snap.string()});
  ASSERT_TRUE(a.ok()) << a.err;
  const auto b = run_command({binary(), "map", "--snapshot", snap.string(), "--json"});
  ASSERT_TRUE(b.ok()) << b.err;
  EXPECT_EQ(nlohmann::json::parse(a.out)["vdisks"], nlohmann::json::parse(b.out)["vdisks"]);
  std::filesystem::remove(snap);
}

TEST_F(MapCli, MissingSourceIsAnActionableError) {
  const auto r = run_command({binary(), "map"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--stream"), std::string::npos) << r.err;
}

// A stream the chain would have recorded for an image: one tagged write per layout extent.
void write_stream_for(const std::vector<LayoutExtent>& layout, const std::filesystem::path& image,
                      DeviceId dev, const std::filesystem::path& out,
                      std::int64_t perturb_sectors) {
  StreamWriter w(out);
  w.write(VdiskDeclaration{1, 1, "vm1", "disk0", image.string()});
  std::uint64_t t = 1'000'000;
  for (const auto& l : layout) {
    for (std::uint64_t off = 0; off < l.length; off += 1 << 20) {
      const auto len = static_cast<std::uint32_t>(std::min<std::uint64_t>(1 << 20, l.length - off));
      PhysEvent e;
      e.ts_ns = t + 10;
      e.sector = (l.device_offset + off) / 512 + static_cast<std::uint64_t>(perturb_sectors);
      perturb_sectors = 0;  // only the first bio lands elsewhere
      e.bytes = len;
      e.dev = dev.kernel();
      e.tgid = 10;
      e.ioprio = tag::ioprio_for_slot(1);
      e.op = static_cast<std::uint8_t>(IoOp::kWrite);
      w.write(e);
      ContextRecord r;
      r.submit_ns = t;
      r.complete_ns = t + 100;
      r.voffset = l.logical + off;
      r.length = len;
      r.tgid = 10;
      r.vm_id = 1;
      r.vdisk_id = 1;
      r.slot = 1;
      r.op = static_cast<std::uint8_t>(IoOp::kWrite);
      w.write(r);
      t += 1000;
    }
  }
}

// What `v2p serve --record` writes for a vdisk behind an upstream, plus the daemon's bios: the
// backend process frame, then two overlapping untagged requests (4 KiB at voffset 0 and 4096)
// whose two bios, at their true places, each had both requests as candidates: confidence 1/2.
void write_opaque_stream_for(const std::vector<LayoutExtent>& layout,
                             const std::filesystem::path& image, DeviceId dev,
                             const std::filesystem::path& out) {
  constexpr std::uint32_t kDaemon = 4242;
  StreamWriter w(out);
  w.write(VdiskDeclaration{1, 1, "vm1", "disk0", image.string()});
  w.write(BackendProcess{1, 1, kDaemon, 0});
  for (std::uint64_t v = 0; v < 8192; v += 4096) {
    PhysEvent e;
    e.ts_ns = 1'000'500 + v;
    e.sector = (layout.at(0).device_offset + v) / 512;
    e.bytes = 4096;
    e.dev = dev.kernel();
    e.tgid = kDaemon;
    e.op = static_cast<std::uint8_t>(IoOp::kWrite);
    w.write(e);
  }
  for (std::uint64_t v = 0; v < 8192; v += 4096) {
    ContextRecord r;
    r.submit_ns = 1'000'000;
    r.complete_ns = 1'010'000 + v;
    r.voffset = v;
    r.length = 4096;
    r.tgid = kDaemon;
    r.vm_id = 1;
    r.vdisk_id = 1;
    r.op = static_cast<std::uint8_t>(IoOp::kWrite);
    w.write(r);
  }
}

class VerifyCli : public ::testing::TestWithParam<std::string> {};

// Also checks that verify finds the file system's device by itself (btrfs: not st_dev).
TEST_P(VerifyCli, ExactMapPassesPerturbedMapFails) {
  V2P_REQUIRE_ROOT("loop devices, mount");
  V2P_REQUIRE_TOOLS("mkfs." + GetParam());
  const auto dir =
      std::filesystem::path("/var/tmp") / ("v2p-cli-verify." + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  // Removed also when an ASSERT below returns early (after the file system is unmounted).
  struct RemoveAll {
    std::filesystem::path path;
    ~RemoveAll() { std::filesystem::remove_all(path); }
  } remove_dir{dir};
  {
    LoopFilesystem fs({dir / "backing.img", dir / "mnt", 512ULL << 20, GetParam(), true});
    const auto image = fs.mountpoint() / "vm1.raw";
    {
      std::ofstream f(image, std::ios::binary);
      std::string block(1 << 20, 'x');
      for (int i = 0; i < 4; ++i) f.write(block.data(), static_cast<std::streamsize>(block.size()));
    }
    std::filesystem::resize_file(image, 32ULL << 20);
    const auto layout = image_layout(image);
    const auto good = dir / "good.v2ps", bad = dir / "bad.v2ps";
    write_stream_for(layout, image, fs.device(), good, 0);
    write_stream_for(layout, image, fs.device(), bad, 8);
    auto r =
        run_command({binary(), "verify", "--image", image.string(), "--stream", good.string()});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("accuracy 100.00%"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("coverage 100.00%"), std::string::npos) << r.out;
    r = run_command({binary(), "verify", "--image", image.string(), "--stream", bad.string()});
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_NE(r.out.find("mismatch:"), std::string::npos) << r.out;
    r = run_command({binary(), "verify", "--image", image.string(), "--stream", bad.string(),
                     "--allow-mismatch"});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    // The opaque path: the daemon is registered from the stream itself (no --backend), and
    // verify prints the confidence next to the accuracy.
    ASSERT_GE(layout.at(0).length, 8192u);
    const auto opaque = dir / "opaque.v2ps";
    write_opaque_stream_for(layout, image, fs.device(), opaque);
    r = run_command({binary(), "verify", "--image", image.string(), "--stream", opaque.string(),
                     "--allow-mismatch"});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("confidence 0.5000"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("confidence [0.50, 0.99): observed"), std::string::npos) << r.out;
  }
}

INSTANTIATE_TEST_SUITE_P(FileSystems, VerifyCli, ::testing::Values("ext4", "xfs", "btrfs"));

}  // namespace
}  // namespace v2p::correlator
