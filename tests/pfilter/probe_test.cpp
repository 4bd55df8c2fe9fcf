// The probe against real I/O: a file system on a loop device, tagged O_DIRECT writes through
// io_uring, and the sectors FIEMAP says the data went to. Needs root and BTF.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/blkpg_partition.hpp"
#include "common/error.hpp"
#include "common/loop_filesystem.hpp"
#include "common/subprocess.hpp"
#include "common/test_skip.hpp"
#include "pfilter/io_uring_writer.hpp"
#include "pfilter/probe.hpp"
#include "pfilter/topology.hpp"
#include "v2p/tag.hpp"

namespace v2p::pfilter {
namespace {

namespace fs = std::filesystem;

#define V2P_REQUIRE_ROOT_AND_BTF()          \
  do {                                      \
    V2P_REQUIRE_ROOT("loop devices, eBPF"); \
    V2P_REQUIRE_BTF();                      \
  } while (0)

// A per-process scratch directory in /var/tmp (a real disk file system, so loop devices can use
// direct I/O); removed with everything in it, and leftovers of killed runs are reaped first.
class ScratchDir {
 public:
  ScratchDir() {
    reap_stale_loop_filesystems("/var/tmp/v2p-pfilter-test-");
    path_ = "/var/tmp/v2p-pfilter-test-" + std::to_string(::getpid());
    fs::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  [[nodiscard]] const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string comm_of(const PhysEvent& e) {
  return std::string(e.comm, ::strnlen(e.comm, sizeof e.comm));
}

// As bpf_get_current_comm() gives it: NUL-terminated, the rest zero.
bool zero_padded_comm(const PhysEvent& e) {
  const auto n = ::strnlen(e.comm, sizeof e.comm);
  return n < sizeof e.comm &&
         std::all_of(e.comm + n, e.comm + sizeof e.comm, [](char c) { return c == 0; });
}

std::string own_comm() {
  std::ifstream in("/proc/self/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

std::vector<PhysEvent> drain(Probe& probe) {
  std::vector<PhysEvent> events;
  // Completions arrive a little after the writes return; two quiet polls mean we have them.
  for (int quiet = 0; quiet < 2;) {
    const auto n = probe.poll(200, [&events](const PhysEvent& e) { events.push_back(e); });
    quiet = n == 0 ? quiet + 1 : 0;
  }
  return events;
}

// Ids of the programs pinned in `dir` ("ID: tracing name v2p_… " from bpftool).
std::vector<std::string> pinned_program_ids(const fs::path& dir) {
  std::vector<std::string> ids;
  for (const char* name :
       {"v2p_bio_queue", "v2p_bio_remap", "v2p_rq_done", "v2p_bio_done", "v2p_flush"}) {
    if (!fs::exists(dir / name)) continue;
    const auto r = run_command({"bpftool", "prog", "show", "pinned", (dir / name).string()});
    const auto colon = r.out.find(':');
    if (r.ok() && colon != std::string::npos) ids.push_back(r.out.substr(0, colon));
  }
  return ids;
}

// The kernel frees a detached program after an RCU grace period, so allow it a moment. Other
// probes may run meanwhile (a demo, a benchmark), so look for our programs by id, not by name.
bool programs_gone(const std::vector<std::string>& ids) {
  for (int i = 0; i < 50; ++i) {
    bool any = false;
    for (const auto& id : ids) any = any || run_command({"bpftool", "prog", "show", "id", id}).ok();
    if (!any) return true;
    ::usleep(100'000);
  }
  return false;
}

fs::path test_pin_dir(const std::string& what) {
  return "/sys/fs/bpf/v2p-test-" + what + "-" + std::to_string(::getpid());
}

// The image file as an operator would create it for a VM: on btrfs with NOCOW (chattr +C), since
// btrfs turns O_DIRECT writes to checksummed files into buffered ones (measured on 6.18), which
// lose the submitter's ioprio and are written back later.
fs::path create_image(const fs::path& path, const std::string& fs_type) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw system_error("cannot create " + path.string());
  int flags = 0;
  if (fs_type == "btrfs" && ::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
    flags |= FS_NOCOW_FL;
    ::ioctl(fd, FS_IOC_SETFLAGS, &flags);
  }
  ::close(fd);
  return path;
}

// An ext4 file system on a loop device and an unpinned probe that sees only this process's I/O
// on it.
class OwnIoOnExt4 {
 public:
  explicit OwnIoOnExt4(bool completions)
      : host_({scratch_.path() / "host.img", scratch_.path() / "mnt", 256ULL << 20, "ext4", true}) {
    ProbeOptions options;
    options.devices = {host_.device()};
    options.tgids = {static_cast<std::uint32_t>(::getpid())};
    options.completions = completions;
    options.pin = false;
    probe_ = Probe::attach(options);
  }
  [[nodiscard]] const LoopFilesystem& host() const { return host_; }
  [[nodiscard]] Probe& probe() { return *probe_; }

 private:
  ScratchDir scratch_;
  LoopFilesystem host_;
  std::unique_ptr<Probe> probe_;
};

class ProbeOnFilesystem : public ::testing::TestWithParam<std::string> {};

TEST_P(ProbeOnFilesystem, SeesTaggedWritesAtTheFiemapSectors) {
  V2P_REQUIRE_ROOT_AND_BTF();
  const std::string fs_type = GetParam();
  V2P_REQUIRE_TOOLS("mkfs." + fs_type);
  ScratchDir scratch;
  LoopFilesystem host(
      {scratch.path() / "host.img", scratch.path() / "mnt", 512ULL << 20, fs_type, true});
  LoopFilesystem other(
      {scratch.path() / "other.img", scratch.path() / "other", 512ULL << 20, fs_type, true});

  if (fs_type == "btrfs") {
    // Fill the first data chunk, whose logical addresses equal its physical ones on a fresh
    // file system, so the image lands where only the chunk-tree translation finds it.
    run_checked({"dd", "if=/dev/zero", "of=" + (host.mountpoint() / "filler").string(), "bs=1M",
                 "count=8", "conv=fsync"});
  }
  ProbeOptions options;
  options.devices = {host.device()};
  options.completions = true;
  options.pin = false;  // pinning has its own tests; a demo may own the default directory
  auto probe = Probe::attach(options);

  // Eight 4 KiB blocks 64 KiB apart, each with its own slot.
  std::vector<test::TaggedBlock> blocks;
  for (std::uint16_t k = 0; k < 8; ++k)
    blocks.push_back(test::tagged_block(k * 65536ULL, static_cast<std::uint16_t>(k + 1)));
  const auto image = create_image(host.mountpoint() / "v2p-image.raw", fs_type);
  test::write_tagged(image, blocks);
  test::write_tagged(other.mountpoint() / "v2p-noise.raw", blocks);  // excluded by the filter
  const auto events = drain(*probe);
  ASSERT_GT(events.size(), 0U);
  // btrfs gives the file an anonymous st_dev; the mount table must still lead to the loop device.
  EXPECT_EQ(device_of_path(image), host.device());
  EXPECT_EQ(device_of_path(host.mountpoint()), host.device());
  EXPECT_EQ(probe->lost_events(), 0U);
  EXPECT_EQ(probe->unreported_completions(), 0U);

  for (const auto& e : events) {
    ASSERT_NE(e.device(), other.device()) << "the device filter let the other loop device through";
  }
  int translated = 0;  // blocks whose device sector differs from FIEMAP's raw address
  for (const auto& b : blocks) {
    const auto ranges = map_file_range(image, b.offset, 4096);
    const auto raw = fiemap(image, b.offset, 4096);
    ASSERT_FALSE(raw.empty());
    if (!ranges.empty() &&
        raw[0].physical + (b.offset - raw[0].logical) != ranges[0].sector * 512) {
      ++translated;
    }
    ASSERT_EQ(ranges.size(), 1U) << fs_type << ": block at " << b.offset;
    const auto& r = ranges[0];
    EXPECT_EQ(r.device, host.device());
    EXPECT_EQ(r.sectors, 8U);
    const auto queued = std::find_if(events.begin(), events.end(), [&](const PhysEvent& e) {
      return e.kind == static_cast<std::uint8_t>(PhysEventKind::kQueue) && e.device() == r.device &&
             e.sector == r.sector && e.op == static_cast<std::uint8_t>(IoOp::kWrite);
    });
    ASSERT_NE(queued, events.end()) << fs_type << ": no queued write at sector " << r.sector
                                    << " (file offset " << b.offset << ")";
    EXPECT_EQ(queued->bytes, 4096U);
    EXPECT_EQ(queued->tgid, static_cast<std::uint32_t>(::getpid()));
    EXPECT_TRUE(comm_of(*queued) == own_comm() || comm_of(*queued).rfind("iou-wrk-", 0) == 0)
        << "comm " << comm_of(*queued) << ", expected " << own_comm();
    EXPECT_TRUE(zero_padded_comm(*queued)) << comm_of(*queued);
    EXPECT_EQ(queued->ioprio, b.ioprio);
    EXPECT_EQ(tag::slot_from_ioprio(queued->ioprio), b.slot);
    const auto done = std::find_if(events.begin(), events.end(), [&](const PhysEvent& e) {
      return e.kind == static_cast<std::uint8_t>(PhysEventKind::kComplete) &&
             e.device() == r.device && e.sector == r.sector;
    });
    ASSERT_NE(done, events.end()) << "no completion for sector " << r.sector;
    EXPECT_GT(done->latency_ns, 0U);
    EXPECT_EQ(done->error, 0);
    EXPECT_EQ(done->ioprio, queued->ioprio);
    EXPECT_EQ(done->tgid, queued->tgid);
    EXPECT_EQ(done->tid, queued->tid);
    EXPECT_EQ(std::memcmp(done->comm, queued->comm, sizeof done->comm), 0);
  }
  // btrfs: FIEMAP gave logical addresses and the chunk tree moved them; others: identity.
  if (fs_type == "btrfs") {
    EXPECT_EQ(translated, static_cast<int>(blocks.size()));
  } else {
    EXPECT_EQ(translated, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Filesystems, ProbeOnFilesystem, ::testing::Values("ext4", "xfs", "btrfs"));

// Two layers down: a file in a file system on a loop device, whose backing file lives on the
// disk below. FIEMAP maps the file to loop sectors, map_loop_range() maps those through the
// backing file to the disk, and the loop device's own I/O must land exactly there.
TEST(Probe, MapsThroughTheLoopDeviceToTheDiskBelow) {
  V2P_REQUIRE_ROOT_AND_BTF();
  ScratchDir scratch;
  LoopFilesystem host(
      {scratch.path() / "host.img", scratch.path() / "mnt", 256ULL << 20, "ext4", true});
  const auto loop = describe_device(host.device());
  ASSERT_TRUE(loop);
  ASSERT_EQ(loop->kind, DeviceKind::kLoop);
  DeviceId below;
  try {
    below = device_of_path(loop->backing_file);
  } catch (const Error& e) {
    V2P_SKIP_MACHINE(std::string("the backing file is on no block device: ") + e.what());
  }
  ProbeOptions options;
  options.devices = {host.device(), below};
  options.pin = false;
  auto probe = Probe::attach(options);
  const auto image = create_image(host.mountpoint() / "v2p-image.raw", "ext4");
  test::write_tagged(image, {test::tagged_block(0, 1), test::tagged_block(1 << 20, 2)});
  const auto events = drain(*probe);
  for (const std::uint64_t offset : {0ULL, 1ULL << 20}) {
    const auto on_loop = map_file_range(image, offset, 4096);
    ASSERT_EQ(on_loop.size(), 1U);
    const auto on_disk = map_loop_range(*loop, on_loop[0].sector, on_loop[0].sectors);
    ASSERT_FALSE(on_disk.empty());
    EXPECT_EQ(on_disk[0].device, below);
    const bool seen = std::any_of(events.begin(), events.end(), [&](const PhysEvent& e) {
      return e.kind == static_cast<std::uint8_t>(PhysEventKind::kQueue) && e.device() == below &&
             e.op == static_cast<std::uint8_t>(IoOp::kWrite) && e.sector <= on_disk[0].sector &&
             on_disk[0].sector < e.sector + e.bytes / 512;
    });
    EXPECT_TRUE(seen) << "no write on the disk below at sector " << on_disk[0].sector;
  }
}

// Completions travel in per-CPU batches of 16 and bio memory is reused at once (one I/O at a
// time, so the next bio often gets the address of the last): every completion must belong to
// exactly one queued bio of ours, with that bio's sector, op and queue time, and the bios must get
// their completions. One CI run (ASan suite, 2026-11-23) saw one bio of ~310 without its
// completion and nothing counted lost. bench/pfilter/completion_audit.sh then found a race in the
// flush (fixed) and a rarer loss of whole groups of completions that never reach the program
// (open, docs/pfilter.md); the test allows 1 % of bios without a completion and prints them.
// Losing completions wholesale (the address-reuse bug this test found lost 65 %) still fails.
TEST(Probe, ReportsOneCompletionPerBioAcrossBatches) {
  V2P_REQUIRE_ROOT_AND_BTF();
  OwnIoOnExt4 fixture(/*completions=*/true);
  const LoopFilesystem& host = fixture.host();
  Probe* probe = &fixture.probe();
  std::vector<test::TaggedBlock> blocks;
  for (std::uint16_t k = 0; k < 150; ++k) {
    blocks.push_back(test::tagged_block(k * 8192ULL, static_cast<std::uint16_t>(k % 200 + 1)));
  }
  const auto file = host.mountpoint() / "burst.raw";
  test::write_tagged(file, blocks);
  test::write_tagged(file, blocks, 4096, /*read_instead=*/true);
  auto events = drain(*probe);
  probe->poll(0, [&events](const PhysEvent& e) { events.push_back(e); });  // flushes every batch
  EXPECT_EQ(probe->lost_events(), 0U);
  EXPECT_EQ(probe->unreported_completions(), 0U);
  std::size_t queued = 0;
  std::size_t matched = 0;
  for (const auto& q : events) {
    if (q.kind != static_cast<std::uint8_t>(PhysEventKind::kQueue)) continue;
    ++queued;
    // The completions of this bio: same sector and op, and its queue time.
    std::size_t found = 0;
    for (const auto& e : events) {
      if (e.kind != static_cast<std::uint8_t>(PhysEventKind::kComplete) || e.sector != q.sector ||
          e.op != q.op || e.ts_ns - e.latency_ns != q.ts_ns) {
        continue;
      }
      ++found;
      EXPECT_GT(e.ts_ns, q.ts_ns);
      EXPECT_EQ(e.ioprio, q.ioprio);
      EXPECT_EQ(e.bytes, q.bytes);
    }
    EXPECT_LE(found, 1U) << "the bio queued at sector " << q.sector << " completed twice";
    if (found == 0) {
      std::cerr << "no completion for the bio queued at sector " << q.sector << ", " << q.bytes
                << " bytes, op " << int{q.op} << ", flags 0x" << std::hex << q.cmd_flags << std::dec
                << ", tid " << q.tid << " (" << comm_of(q) << ")\n";
    }
    matched += found;
  }
  std::size_t completed = 0;
  for (const auto& e : events) {
    completed += e.kind == static_cast<std::uint8_t>(PhysEventKind::kComplete);
  }
  EXPECT_GE(queued, 2 * blocks.size());  // every write and read (plus journal and metadata)
  EXPECT_EQ(completed, matched) << "a completion matched no queued bio of ours";
  EXPECT_GE(matched * 100, queued * 99) << matched << " of " << queued << " bios completed";
}

// What the kernel does to the ioprio an SQE carries, so a change in either direction shows up:
// under class NONE the hint is replaced by the task default before block_bio_queue; under an
// explicit class it arrives intact.
TEST(Probe, IoprioHintNeedsAnExplicitClass) {
  V2P_REQUIRE_ROOT_AND_BTF();
  OwnIoOnExt4 fixture(/*completions=*/false);
  const LoopFilesystem& host = fixture.host();
  Probe* probe = &fixture.probe();
  const std::uint16_t none_class = 5 << 3;                      // slot 5, class NONE
  const std::uint16_t be_class = tag::kDefaultBase | (6 << 3);  // slot 6, class BE
  test::write_tagged(host.mountpoint() / "a.raw", {{0, 5, none_class}, {65536, 6, be_class}});
  const auto events = drain(*probe);
  auto seen = [&events](std::uint16_t ioprio) {
    return std::any_of(events.begin(), events.end(), [ioprio](const PhysEvent& e) {
      return e.kind == static_cast<std::uint8_t>(PhysEventKind::kQueue) && e.ioprio == ioprio;
    });
  };
  EXPECT_TRUE(seen(be_class));
  EXPECT_FALSE(seen(none_class))
      << "class-NONE hints now survive: tag::ioprio_for_slot could use class NONE again";
}

TEST(Probe, TgidFilterExcludesOtherProcesses) {
  V2P_REQUIRE_ROOT_AND_BTF();
  OwnIoOnExt4 fixture(/*completions=*/false);
  const LoopFilesystem& host = fixture.host();
  Probe* probe = &fixture.probe();
  // Another process writes; then we do.
  run_checked({"dd", "if=/dev/zero", "of=" + (host.mountpoint() / "dd.raw").string(), "bs=4k",
               "count=16", "oflag=direct"});
  test::write_tagged(host.mountpoint() / "mine.raw", {test::tagged_block(0, 9)});
  const auto events = drain(*probe);
  ASSERT_FALSE(events.empty());
  for (const auto& e : events) EXPECT_EQ(e.tgid, static_cast<std::uint32_t>(::getpid()));
  EXPECT_TRUE(std::any_of(events.begin(), events.end(),
                          [](const PhysEvent& e) { return tag::slot_from_ioprio(e.ioprio) == 9; }));
}

// The tgid filter works at queue time only; the completion programs see every request of the
// device. Another process's completions must find no queue event to join, be reported as such,
// and never appear as events.
TEST(Probe, CompletionsOfFilteredOutProcessesAreCountedUnmatched) {
  V2P_REQUIRE_ROOT_AND_BTF();
  OwnIoOnExt4 fixture(/*completions=*/true);
  Probe* probe = &fixture.probe();
  const auto before = probe->unmatched_completions();
  run_checked({"dd", "if=/dev/zero", "of=" + (fixture.host().mountpoint() / "dd.raw").string(),
               "bs=4k", "count=16", "oflag=direct"});
  auto events = drain(*probe);
  probe->poll(0, [&events](const PhysEvent& e) { events.push_back(e); });  // flushes every batch
  for (const auto& e : events) EXPECT_EQ(e.tgid, static_cast<std::uint32_t>(::getpid()));
  EXPECT_GE(probe->unmatched_completions() - before, 16U);  // dd's 16 direct writes at least
  EXPECT_EQ(probe->lost_events(), 0U);
}

// The first V2P_SET_INLINE devices are compared inline, the rest looked up in a hash map; devices
// added while attached land in either. Each way the device's I/O must get through, and only its.
TEST(Probe, DeviceFilterBeyondTheInlineEntriesAndAtRunTime) {
  V2P_REQUIRE_ROOT_AND_BTF();
  ScratchDir scratch;
  LoopFilesystem host(
      {scratch.path() / "host.img", scratch.path() / "mnt", 256ULL << 20, "ext4", true});
  LoopFilesystem other(
      {scratch.path() / "other.img", scratch.path() / "other", 256ULL << 20, "ext4", true});
  std::vector<DeviceId> nobody;  // devices nothing does I/O on
  for (unsigned m = 1000; m < 1012; ++m) nobody.push_back(DeviceId::from_major_minor(7, m));
  const auto sees_only_host = [&](Probe& probe, std::uint16_t slot) {
    const auto file = "f" + std::to_string(slot) + ".raw";
    test::write_tagged(host.mountpoint() / file, {test::tagged_block(0, slot)});
    test::write_tagged(other.mountpoint() / file, {test::tagged_block(0, slot)});
    const auto events = drain(probe);
    for (const auto& e : events) EXPECT_EQ(e.device(), host.device());
    return std::any_of(events.begin(), events.end(), [slot](const PhysEvent& e) {
      return tag::slot_from_ioprio(e.ioprio) == slot;
    });
  };
  {
    ProbeOptions options;
    options.devices = nobody;  // more than fit inline: host goes to the hash map
    options.devices.push_back(host.device());
    options.pin = false;
    auto probe = Probe::attach(options);
    EXPECT_TRUE(sees_only_host(*probe, 11)) << "a device in the hash map part was filtered out";
  }
  {
    ProbeOptions options;
    options.devices = {nobody[0]};
    options.pin = false;
    auto probe = Probe::attach(options);
    probe->add_device(host.device());  // a free inline entry, while attached
    EXPECT_TRUE(sees_only_host(*probe, 12)) << "a device added at run time was filtered out";
  }
  {
    ProbeOptions options;
    options.devices = nobody;
    options.pin = false;
    auto probe = Probe::attach(options);
    probe->add_device(host.device());  // into the hash map, while attached
    EXPECT_TRUE(sees_only_host(*probe, 13)) << "a device added at run time was filtered out";
  }
}

// A partitioned loop device: the bio is queued on the partition and remapped to the disk.
class PartitionedLoop {
 public:
  explicit PartitionedLoop(const fs::path& image) {
    // A DOS label by hand (no partitioning tool needed): one Linux partition from sector 2048 to
    // the end of a 64 MiB image.
    std::array<unsigned char, 512> mbr{};
    const std::uint32_t start = 2048;
    const std::uint32_t count = (64u << 20) / 512 - start;
    mbr[446 + 4] = 0x83;
    std::memcpy(&mbr[446 + 8], &start, 4);
    std::memcpy(&mbr[446 + 12], &count, 4);
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    {
      std::ofstream out(image, std::ios::binary);
      out.write(reinterpret_cast<const char*>(mbr.data()), mbr.size());
    }
    fs::resize_file(image, 64u << 20);
    // --partscan: the kernel then drops the partition again when the loop device is detached.
    loop_ = run_checked({"losetup", "--find", "--show", "--partscan", image.string()});
    while (!loop_.empty() && loop_.back() == '\n') loop_.pop_back();
    try {
      part_.emplace(loop_, std::uint64_t{start} * 512, std::uint64_t{count} * 512,
                    image.parent_path());
    } catch (...) {
      run_command({"losetup", "-d", loop_});
      throw;
    }
  }
  ~PartitionedLoop() {
    part_.reset();
    run_command({"losetup", "-d", loop_});
  }
  PartitionedLoop(const PartitionedLoop&) = delete;
  PartitionedLoop& operator=(const PartitionedLoop&) = delete;

  [[nodiscard]] std::string disk() const { return loop_; }
  [[nodiscard]] std::string partition() const { return part_->node().string(); }

 private:
  std::string loop_;
  std::optional<BlkpgPartition> part_;
};

TEST(Probe, ReportsPartitionRemaps) {
  V2P_REQUIRE_ROOT_AND_BTF();
  ScratchDir scratch;
  PartitionedLoop loop(scratch.path() / "parted.img");
  ASSERT_TRUE(fs::exists(loop.partition())) << "no partition node for " << loop.disk();
  const auto disk = device_of_node(loop.disk());
  const auto part = device_of_node(loop.partition());
  const auto described = describe_device(part);
  ASSERT_TRUE(described);
  EXPECT_EQ(described->kind, DeviceKind::kPartition);
  EXPECT_EQ(described->parent, disk);
  EXPECT_EQ(described->start_sector, 2048U);

  ProbeOptions options;
  options.devices = {part};
  options.pin = false;
  auto probe = Probe::attach(options);
  test::write_tagged(loop.partition(), {test::tagged_block(8192, 3)});
  const auto events = drain(*probe);
  // Queue events name the device their sector is on: the disk once the partition remap has run
  // (before block_bio_queue on 6.x), the partition before it (older kernels).
  const auto queued = std::find_if(events.begin(), events.end(), [](const PhysEvent& e) {
    return e.kind == static_cast<std::uint8_t>(PhysEventKind::kQueue);
  });
  ASSERT_NE(queued, events.end());
  EXPECT_TRUE((queued->device() == disk && queued->sector == 2048U + 16) ||
              (queued->device() == part && queued->sector == 16U))
      << "queue event on " << queued->dev << " at sector " << queued->sector;
  const auto remap = std::find_if(events.begin(), events.end(), [](const PhysEvent& e) {
    return e.kind == static_cast<std::uint8_t>(PhysEventKind::kRemap);
  });
  ASSERT_NE(remap, events.end()) << "no remap event";
  EXPECT_EQ(remap->device(), disk);
  EXPECT_EQ(remap->old_dev, part.kernel());
  EXPECT_EQ(remap->old_sector, 16U);
  EXPECT_EQ(remap->sector, 2048U + 16);
  EXPECT_EQ(tag::slot_from_ioprio(remap->ioprio), 3);
}

TEST(Probe, PinsWhileAttachedAndLeavesNothingBehind) {
  V2P_REQUIRE_ROOT_AND_BTF();
  const fs::path dir = test_pin_dir("pins");
  std::vector<std::string> ids;
  {
    ProbeOptions options;
    options.devices = {DeviceId::from_major_minor(7, 1000)};  // nothing does I/O there
    options.completions = true;
    options.pin_dir = dir;
    auto probe = Probe::attach(options);
    EXPECT_EQ(probe->pin_dir(), dir);
    for (const char* name : {"v2p_bio_queue", "v2p_bio_remap", "v2p_rq_done", "v2p_bio_done",
                             "v2p_flush", "v2p_events", "v2p_devices", "v2p_tgids", "v2p_counters",
                             "v2p_complete_batches", "v2p_event_batches", "v2p_unsent_since"}) {
      EXPECT_TRUE(fs::exists(dir / name)) << name;
    }
    ids = pinned_program_ids(dir);
    EXPECT_EQ(ids.size(), 5U);
    // A second probe on the same pin directory is refused with a reason, not allowed to unpin.
    EXPECT_THROW(Probe::attach(options), Error);
    EXPECT_TRUE(fs::exists(dir / "v2p_events"));
  }
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_TRUE(programs_gone(ids));
}

TEST(Probe, DefaultPinDirectoryIsRemoved) {
  V2P_REQUIRE_ROOT_AND_BTF();
  const fs::path dir = "/sys/fs/bpf/v2p";
  std::vector<std::string> ids;
  {
    ProbeOptions options;
    options.devices = {DeviceId::from_major_minor(7, 1000)};
    options.completions = true;
    std::unique_ptr<Probe> probe;
    try {
      probe = Probe::attach(options);
    } catch (const Error& e) {
      if (std::string(e.what()).find("another v2p probe") != std::string::npos) {
        V2P_SKIP_MACHINE("another v2p probe (a demo?) owns " + dir.string());
      }
      throw;
    }
    ids = pinned_program_ids(dir);
    EXPECT_EQ(ids.size(), 5U);
  }
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_TRUE(programs_gone(ids));
}

TEST(Probe, ReplacesAStalePinDirectory) {
  V2P_REQUIRE_ROOT_AND_BTF();
  const fs::path dir = test_pin_dir("stale");
  fs::create_directories(dir / "leftover");  // as if a killed run had left it
  {
    ProbeOptions options;
    options.devices = {DeviceId::from_major_minor(7, 1000)};
    options.completions = false;
    options.pin_dir = dir;
    auto probe = Probe::attach(options);
    EXPECT_FALSE(fs::exists(dir / "leftover"));
    // Without completions: v2p_rq_done still runs (the per-device counters), v2p_bio_done not.
    EXPECT_TRUE(fs::exists(dir / "v2p_rq_done"));
    EXPECT_FALSE(fs::exists(dir / "v2p_bio_done"));
    EXPECT_TRUE(fs::exists(dir / "v2p_device_stats"));
    EXPECT_TRUE(fs::exists(dir / "v2p_bio_queue"));
  }
  EXPECT_FALSE(fs::exists(dir));
}

// A full ring loses events, and every one is counted: the smallest ring (one page, three event
// batches) is not read while 300 direct writes are traced, so most batches find it full.
TEST(Probe, CountsEveryEventAFullRingLoses) {
  V2P_REQUIRE_ROOT_AND_BTF();
  ScratchDir scratch;
  LoopFilesystem host(
      {scratch.path() / "host.img", scratch.path() / "mnt", 256ULL << 20, "ext4", true});
  ProbeOptions options;
  options.devices = {host.device()};
  options.tgids = {static_cast<std::uint32_t>(::getpid())};
  options.ring_bytes = static_cast<std::uint32_t>(::sysconf(_SC_PAGESIZE));
  options.pin = false;
  auto probe = Probe::attach(options);
  std::vector<test::TaggedBlock> blocks;
  for (std::uint16_t k = 0; k < 300; ++k) {
    blocks.push_back(test::tagged_block(k * 8192ULL, static_cast<std::uint16_t>(k % 200 + 1)));
  }
  test::write_tagged(host.mountpoint() / "flood.raw", blocks);
  std::uint64_t delivered = 0;
  for (int round = 0; round < 3; ++round) {  // poll(0) flushes every batch into the ring
    delivered += probe->poll(0, [](const PhysEvent&) {});
  }
  const std::uint64_t lost = probe->lost_events();
  EXPECT_GT(lost, 0U);
  EXPECT_EQ(probe->committed_events(), delivered);
  EXPECT_GE(delivered + lost, blocks.size()) << delivered << " delivered, " << lost << " lost";
}

TEST(Probe, RejectsABadRingSize) {
  V2P_REQUIRE_ROOT_AND_BTF();
  ProbeOptions options;
  options.ring_bytes = 3u << 20;
  options.pin = false;
  EXPECT_THROW(Probe::attach(options), Error);
}

}  // namespace
}  // namespace v2p::pfilter
