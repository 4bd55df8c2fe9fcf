// What the probe sends by default: a bio the map already knows is counted in the kernel, not
// sent (docs/pfilter.md, "What the probe sends"); the counters it keeps instead, read through the
// probe and with bpftool from their pins. Real loop devices, ext4, io_uring; needs root and BTF.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/loop_filesystem.hpp"
#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "pfilter/io_uring_writer.hpp"
#include "pfilter/probe.hpp"
#include "pfilter/slot_table.hpp"
#include "v2p/tag.hpp"

namespace v2p::pfilter {
namespace {

namespace fs = std::filesystem;

#define V2P_REQUIRE_ROOT_AND_BTF()          \
  do {                                      \
    V2P_REQUIRE_ROOT("loop devices, eBPF"); \
    V2P_REQUIRE_BTF();                      \
  } while (0)

constexpr std::uint32_t kBlocks = 8;

// ext4 on a loop device (in a per-process directory under /var/tmp) and a probe that sees this
// process's I/O on it only; pinned under a per-process directory when asked.
class Fixture {
 public:
  explicit Fixture(bool every_bio, bool pin = false)
      : dir_("/var/tmp/v2p-suppression-test-" + std::to_string(::getpid())) {
    reap_stale_loop_filesystems("/var/tmp/v2p-suppression-test-");
    fs::create_directories(dir_);
    host_ = std::make_unique<LoopFilesystem>(
        LoopFilesystem::Options{dir_ / "host.img", dir_ / "mnt", 256ULL << 20, "ext4", true});
    ProbeOptions options;
    options.devices = {host_->device()};
    options.tgids = {static_cast<std::uint32_t>(::getpid())};
    options.every_bio = every_bio;
    options.pin = pin;
    options.pin_dir = "/sys/fs/bpf/v2p-suppression-test-" + std::to_string(::getpid());
    probe_ = Probe::attach(options);
  }
  ~Fixture() {
    probe_.reset();
    host_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  Probe& probe() { return *probe_; }
  const LoopFilesystem& host() const { return *host_; }
  fs::path file() const { return host_->mountpoint() / "image.raw"; }

  // Queue events of ours delivered since the last call, by op.
  struct Seen {
    std::size_t reads = 0;
    std::size_t writes = 0;
  };
  Seen drain() {
    Seen seen;
    for (int quiet = 0; quiet < 2;) {
      const auto n = probe_->poll(100, [&seen](const PhysEvent& e) {
        if (e.kind != static_cast<std::uint8_t>(PhysEventKind::kQueue) || e.bytes == 0) return;
        if (e.op == static_cast<std::uint8_t>(IoOp::kRead)) ++seen.reads;
        if (e.op == static_cast<std::uint8_t>(IoOp::kWrite)) ++seen.writes;
      });
      quiet = n == 0 ? quiet + 1 : 0;
    }
    probe_->poll(0, [&seen](const PhysEvent& e) {
      if (e.kind != static_cast<std::uint8_t>(PhysEventKind::kQueue) || e.bytes == 0) return;
      if (e.op == static_cast<std::uint8_t>(IoOp::kRead)) ++seen.reads;
      if (e.op == static_cast<std::uint8_t>(IoOp::kWrite)) ++seen.writes;
    });
    return seen;
  }

 private:
  fs::path dir_;
  std::unique_ptr<LoopFilesystem> host_;
  std::unique_ptr<Probe> probe_;
};

std::vector<test::TaggedBlock> blocks_with_slots(std::uint16_t first_slot) {
  std::vector<test::TaggedBlock> blocks;
  for (std::uint32_t k = 0; k < kBlocks; ++k) {
    const auto slot =
        first_slot == 0 ? std::uint16_t{0} : static_cast<std::uint16_t>(first_slot + k);
    blocks.push_back(test::tagged_block(k * 65536ULL, slot));
  }
  return blocks;
}

// Untagged reads and writes tell the map nothing (the correlator never maps them): counted in
// the kernel, never sent, first sight or not.
TEST(Suppression, UntaggedBiosAreCountedNeverSent) {
  V2P_REQUIRE_ROOT_AND_BTF();
  Fixture f(/*every_bio=*/false);
  ASSERT_TRUE(f.probe().suppressing());
  const auto blocks = blocks_with_slots(0);
  const auto untagged_before = f.probe().untagged_bios();
  test::write_tagged(f.file(), blocks);
  for (int round = 0; round < 5; ++round) test::write_tagged(f.file(), blocks, 4096, true);
  const auto seen = f.drain();
  EXPECT_EQ(seen.reads, 0U);
  EXPECT_EQ(seen.writes, 0U);
  EXPECT_GE(f.probe().untagged_bios() - untagged_before, 6 * kBlocks);
  EXPECT_GE(f.probe().suppressed_bios(), f.probe().untagged_bios());
  EXPECT_EQ(f.probe().lost_events(), 0U);
}

TEST(Suppression, EveryBioSendsEachRead) {
  V2P_REQUIRE_ROOT_AND_BTF();
  Fixture f(/*every_bio=*/true);
  ASSERT_FALSE(f.probe().suppressing());
  const auto blocks = blocks_with_slots(0);
  test::write_tagged(f.file(), blocks);
  f.drain();
  for (int round = 0; round < 5; ++round) test::write_tagged(f.file(), blocks, 4096, true);
  EXPECT_EQ(f.drain().reads, 5 * kBlocks);
  EXPECT_EQ(f.probe().suppressed_bios(), 0U);
}

// A tagged bio is only suppressed when the export published its slot's context and the map
// already has that context at that place; a changed context is news, an unknown one always is.
TEST(Suppression, TaggedRepeatsNeedAPublishedSlotContext) {
  V2P_REQUIRE_ROOT_AND_BTF();
  Fixture f(/*every_bio=*/false);
  const auto blocks = blocks_with_slots(1);
  test::write_tagged(f.file(), blocks);
  f.drain();
  // No context published: every tagged read is sent.
  for (int round = 0; round < 2; ++round) test::write_tagged(f.file(), blocks, 4096, true);
  EXPECT_EQ(f.drain().reads, 2 * kBlocks);

  const std::uint32_t row = f.probe().add_export(static_cast<std::uint32_t>(::getpid()));
  EXPECT_EQ(f.probe().add_export(static_cast<std::uint32_t>(::getpid())), row);
  SlotTable table(f.probe().slot_table_fd(), row);
  auto publish = [&](std::uint64_t voffset_base) {
    for (const auto& b : blocks) table.publish(b.slot, 7, 3, voffset_base + b.offset);
  };
  publish(0);
  for (int round = 0; round < 3; ++round) test::write_tagged(f.file(), blocks, 4096, true);
  EXPECT_EQ(f.drain().reads, kBlocks) << "the first read with a context is news, the rest not";

  publish(1ULL << 30);  // the same places now claimed for other virtual offsets
  for (int round = 0; round < 2; ++round) test::write_tagged(f.file(), blocks, 4096, true);
  EXPECT_EQ(f.drain().reads, kBlocks);

  for (const auto& b : blocks) table.clear(b.slot);
  for (int round = 0; round < 2; ++round) test::write_tagged(f.file(), blocks, 4096, true);
  EXPECT_EQ(f.drain().reads, 2 * kBlocks);

  // Counted per {vm, vdisk} while the context was known: 3 + 2 rounds of reads.
  std::uint64_t vdisk_reads = 0;
  for (const auto& s : f.probe().vdisk_stats()) {
    if (s.vm == 7 && s.vdisk == 3 && s.op == OpClass::kRead) vdisk_reads = s.ios;
  }
  EXPECT_EQ(vdisk_reads, 5 * kBlocks);
  f.probe().remove_export(static_cast<std::uint32_t>(::getpid()));
}

// A discard may hand any range to anything: everything is reported again afterwards.
TEST(Suppression, ADiscardMakesRepeatsNewsAgain) {
  V2P_REQUIRE_ROOT_AND_BTF();
  Fixture f(/*every_bio=*/false);
  const auto blocks = blocks_with_slots(1);
  test::write_tagged(f.file(), blocks);
  f.drain();  // the writes, and ext4's reads of its metadata on the way
  const std::uint32_t row = f.probe().add_export(static_cast<std::uint32_t>(::getpid()));
  SlotTable table(f.probe().slot_table_fd(), row);
  for (const auto& b : blocks) table.publish(b.slot, 7, 3, b.offset);
  for (int round = 0; round < 2; ++round) test::write_tagged(f.file(), blocks, 4096, true);
  EXPECT_EQ(f.drain().reads, kBlocks);
  // The last MiB of the device: past the data of this nearly empty file system.
  const int fd = ::open(f.host().loop_device().c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::uint64_t range[2] = {255ULL << 20, 1ULL << 20};
  const int rc = ::ioctl(fd, BLKDISCARD, range);
  ::close(fd);
  if (rc != 0) V2P_SKIP_MACHINE("the loop device does not take discards here");
  test::write_tagged(f.file(), blocks, 4096, true);
  EXPECT_EQ(f.drain().reads, kBlocks);
  f.probe().remove_export(static_cast<std::uint32_t>(::getpid()));
}

// The per-device counters after a known workload, through the probe and through bpftool from the
// pin (the contract of docs/pfilter.md).
TEST(Suppression, DeviceCountersThroughTheProbeAndBpftool) {
  V2P_REQUIRE_ROOT_AND_BTF();
  V2P_REQUIRE_TOOLS("bpftool");
  Fixture f(/*every_bio=*/false, /*pin=*/true);
  const auto blocks = blocks_with_slots(0);
  test::write_tagged(f.file(), blocks);
  f.drain();
  auto reads_of_host = [&f](const std::vector<DeviceStats>& stats) {
    for (const auto& s : stats) {
      if (s.dev == f.host().device().kernel() && s.op == OpClass::kRead) return s;
    }
    return DeviceStats{};
  };
  const DeviceStats before = reads_of_host(f.probe().device_stats());
  constexpr int kRounds = 5;
  for (int round = 0; round < kRounds; ++round) test::write_tagged(f.file(), blocks, 4096, true);
  const DeviceStats after = reads_of_host(f.probe().device_stats());
  EXPECT_EQ(after.ios - before.ios, kRounds * kBlocks);
  EXPECT_EQ(after.bytes - before.bytes, kRounds * kBlocks * 4096ULL);
  std::uint64_t timed = 0;
  for (const auto n : after.latency_us_log2) timed += n;
  EXPECT_EQ(timed, after.ios) << "loop devices keep I/O statistics: every request has a latency";

  const auto pin = f.probe().pin_dir() / "v2p_device_stats";
  const auto dump = run_command({"bpftool", "-j", "map", "dump", "pinned", pin.string()});
  ASSERT_TRUE(dump.ok()) << dump.err;
  std::uint64_t bpftool_ios = 0;
  // A per-CPU array whose values name their key (blockio.h): sum every CPU's entry of ours.
  for (const auto& entry : nlohmann::json::parse(dump.out)) {
    for (const auto& cpu : entry.at("formatted").at("values")) {
      const auto& v = cpu.at("value");
      if (v.at("used") == 0 || v.at("dev") != f.host().device().kernel() || v.at("op_class") != 0) {
        continue;
      }
      bpftool_ios += v.at("ios").get<std::uint64_t>();
    }
  }
  EXPECT_EQ(bpftool_ios, after.ios);
}

}  // namespace
}  // namespace v2p::pfilter
