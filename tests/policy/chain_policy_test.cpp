// on_map_change end to end: the live chain (probe + export + correlator) on btrfs feeding a
// policy host, whose narrating policy must see the first write placed, the overwrite relocated
// (copy-on-write), and end with a map replica equal to the correlator's.
#include <gtest/gtest.h>
#include <unistd.h>

#include <mutex>

#include "cli/live_chain.hpp"
#include "common/loop_filesystem.hpp"
#include "common/sparse_image.hpp"
#include "common/subprocess.hpp"
#include "common/test_skip.hpp"

namespace v2p::policy {
namespace {

TEST(ChainPolicy, MapChangesReachThePolicyAndItsReplicaMatchesTheCorrelator) {
  V2P_REQUIRE_ROOT("loop devices, eBPF");
  V2P_REQUIRE_BTF();
  V2P_REQUIRE_TOOLS("mkfs.btrfs", "qemu-io");
  const auto dir =
      std::filesystem::path("/var/tmp") / ("v2p-policy-chain." + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::mutex mu;
  std::vector<std::string> lines;
  {
    LoopFilesystem fs({dir / "host.img", dir / "mnt", 512ULL << 20, "btrfs", true});
    const auto image = fs.mountpoint() / "vm1-disk0.raw";
    create_sparse_image(image, 64ULL << 20, /*nocow=*/false);
    HostOptions o;
    o.log = [&](std::string_view l) {
      const std::lock_guard lk(mu);
      lines.emplace_back(l);
    };
    PolicyHost host(o);
    host.load({V2P_TEST_PROBE_POLICY, {}});
    host.start();
    cli::LiveChainOptions chain_options{
        {fs.device()}, {vfilter::image_vdisk("vm1", "disk0", image)}, dir / "s.sock"};
    chain_options.policies = &host;
    cli::LiveChain chain(chain_options);
    const std::string uri = "nbd+unix:///disk0?socket=" + (dir / "s.sock").string();
    auto run = [&](std::vector<std::string> argv) {
      ChildProcess client(argv);
      while (!client.exited()) chain.pump(50);
      EXPECT_EQ(client.exit_code(), 0);
    };
    run({"qemu-io", "-f", "raw", uri, "-c", "write -P 0x11 0 1M", "-c", "flush"});
    chain.settle();
    run({"qemu-io", "-f", "raw", uri, "-c", "write -P 0x22 0 1M", "-c", "flush"});
    chain.settle();
    host.stop();
    const auto& corr = chain.correlator();
    ASSERT_EQ(corr.vdisk_declarations().size(), 1u);
    const VdiskKey key{VmId{corr.vdisk_declarations()[0].vm_id},
                       VdiskId{corr.vdisk_declarations()[0].vdisk_id}};
    ASSERT_EQ(corr.map().mapped_bytes(key), 1u << 20);
    std::size_t mapped = 0, relocated = 0;
    std::string last;
    for (const auto& l : lines) {
      if (l.rfind("policy probe: map kind=0 ", 0) == 0) ++mapped;
      if (l.rfind("policy probe: map kind=1 ", 0) == 0) ++relocated;
      if (l.rfind("policy probe: map ", 0) == 0) last = l;
    }
    EXPECT_GE(mapped, 1u);
    EXPECT_GE(relocated, 1u) << "the copy-on-write overwrite was not reported as a relocation";
    EXPECT_EQ(host.stats().dropped_map_changes, 0u);
    // The replica the policy reads ends where the correlator's map does.
    EXPECT_NE(last.find(" mapped_bytes=1048576"), std::string::npos) << last;
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace v2p::policy
