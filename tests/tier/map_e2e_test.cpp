// The map shows the tiering: the slow tier image on one loop-device file system, the fast tier
// file on another, the probe on both and the correlator joining. An extent read many times is
// promoted by the built-in policy; reads after that land on the fast device, at the sectors
// where the fast tier file holds the extent's slot (FIEMAP), and the correlator's map says so.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "cli/live_chain.hpp"
#include "common/loop_filesystem.hpp"
#include "common/sparse_image.hpp"
#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "pfilter/topology.hpp"
#include "policy/tier/tier_policy.hpp"
#include "policy/tier/tier_stage.hpp"
#include "vfilter/file_backend.hpp"

namespace v2p::tier {
namespace {

constexpr std::uint64_t kExtent = 1ULL << 20;

TEST(TierMap, HotReadsAfterPromotionAreMappedToTheFastDevice) {
  V2P_REQUIRE_ROOT("loop devices, eBPF");
  V2P_REQUIRE_BTF();
  V2P_REQUIRE_TOOLS("qemu-io", "mkfs.ext4");
  const auto dir =
      std::filesystem::path("/var/tmp") / ("v2p-tier-map." + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  {
    LoopFilesystem slow_fs({dir / "slow.img", dir / "slow", 256ULL << 20, "ext4", true});
    LoopFilesystem fast_fs({dir / "fast.img", dir / "fast", 256ULL << 20, "ext4", true});
    ASSERT_NE(slow_fs.device(), fast_fs.device());
    const auto image = slow_fs.mountpoint() / "vm1-disk0.raw";
    create_sparse_image(image, 64ULL << 20, false);
    TierOptions o;
    o.fast_file = fast_fs.mountpoint() / "disk0.tier";
    o.fast_bytes = 16 * kExtent;
    o.extent_bytes = kExtent;
    o.rate_bytes_per_s = 0;
    auto stage =
        std::make_shared<TierStage>(std::make_shared<vfilter::FileBackend>(image, false, true), o);
    vfilter::VdiskConfig v;
    v.vm = "vm1";
    v.vdisk = "disk0";
    v.image = image;
    v.backend = stage;
    cli::LiveChain chain({{slow_fs.device(), fast_fs.device()}, {v}, dir / "s.sock"});
    const std::string uri = "nbd+unix:///disk0?socket=" + (dir / "s.sock").string();
    auto run = [&](std::vector<std::string> cmds) {
      std::vector<std::string> argv = {"qemu-io", "-f", "raw", "-t", "none", uri};
      for (auto& c : cmds) {
        argv.push_back("-c");
        argv.push_back(c);
      }
      ChildProcess client(argv);
      while (!client.exited()) chain.pump(20);
      std::string out;
      for (const auto& l : client.read_lines()) out += l + "\n";
      EXPECT_EQ(client.exit_code(), 0) << out;
      EXPECT_EQ(out.find("Pattern verification failed"), std::string::npos) << out;
    };
    // Extent 4 written and read once: on the slow tier, mapped to the slow device.
    run({"write -P 0x5a 4M 1M", "flush", "read -P 0x5a 4M 1M"});
    chain.settle();
    const auto& corr = chain.correlator();
    ASSERT_EQ(corr.vdisk_declarations().size(), 1u);
    const VdiskKey key{VmId{corr.vdisk_declarations()[0].vm_id},
                       VdiskId{corr.vdisk_declarations()[0].vdisk_id}};
    auto before = corr.map().find(key, VirtualOffset(4 * kExtent));
    ASSERT_TRUE(before.has_value());
    EXPECT_EQ(before->device, slow_fs.device());

    // Made hot by reads; the built-in policy promotes it.
    TierPolicyParams p;
    p.promote_heat = 8;
    TierAutopilot pilot(*stage, p, std::chrono::milliseconds(50));
    std::vector<std::string> reads;
    for (int i = 0; i < 12; ++i) reads.push_back("read -P 0x5a 4M 1M");
    run(reads);
    for (int i = 0; i < 100 && stage->placement(ExtentIndex(4)).tier != Tier::kFast; ++i) {
      chain.pump(50);
    }
    ASSERT_EQ(stage->placement(ExtentIndex(4)).tier, Tier::kFast) << "not promoted";
    EXPECT_EQ(stage->placement(ExtentIndex(5)).tier, Tier::kSlow);

    // Hot reads now: the map moves the extent to the fast device, at the slot's sectors.
    run({"read -P 0x5a 4M 1M", "read -P 0x5a 4M 1M"});
    chain.settle();
    const auto after = corr.map().find(key, VirtualOffset(4 * kExtent));
    ASSERT_TRUE(after.has_value());
    EXPECT_EQ(after->device, fast_fs.device()) << "the hot extent's reads did not reach the fast "
                                                  "device, per the map";
    const auto slot = stage->placement(ExtentIndex(4)).slot.value();
    const auto where = pfilter::map_file_range(o.fast_file, slot * kExtent, kExtent);
    ASSERT_FALSE(where.empty());
    EXPECT_EQ(where[0].device, fast_fs.device());
    const auto mapped_sector =
        after->sector.value() + (4 * kExtent - after->voffset.value()) / kSectorSize;
    EXPECT_EQ(mapped_sector, where[0].sector)
        << "the map places the extent where FIEMAP has the fast tier slot " << slot;
    EXPECT_GT(after->generation, before->generation) << "counted as a relocation";
    const auto st = stage->status();
    std::cout << "[ tier map ] extent 4: slow " << before->device.major() << ":"
              << before->device.minor() << " sector " << before->sector.value() << " -> fast "
              << after->device.major() << ":" << after->device.minor() << " sector "
              << mapped_sector << " (slot " << slot << "), hot set on fast "
              << 100 * st.hot_fraction_on_fast() << "%\n";
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace v2p::tier
