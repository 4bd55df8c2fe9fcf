// pfilter::DmRingSource without the kernel: the same reads from a file of records (what the
// guest test drains from /dev/v2p-dm), partial records kept until complete, errors with reasons,
// and the records joined by the correlator exactly as probe events. The real device is read in
// the guest (tests/dm/dm_guest_test.sh: dm_guest_tool drain, ring-stats, bench).
#include "pfilter/dm_ring_source.hpp"

#include "pfilter/dm_table.hpp"
#include "pfilter/dm_target.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/subprocess.hpp"
#include "correlator/correlator.hpp"

namespace v2p {
namespace {

class TempFile {
 public:
  TempFile() {
    std::string t = (std::filesystem::temp_directory_path() / "v2p-dm-ring.XXXXXX").string();
    const int fd = mkstemp(t.data());
    if (fd >= 0) close(fd);
    path_ = t;
  }
  ~TempFile() { std::filesystem::remove(path_); }
  void append(const void* p, std::size_t n) const {
    std::ofstream(path_, std::ios::binary | std::ios::app)
        .write(static_cast<const char*>(p), static_cast<std::streamsize>(n));
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

PhysEvent record(std::uint64_t ts, std::uint64_t sector, std::uint16_t slot, std::uint32_t tgid) {
  PhysEvent e;
  e.ts_ns = ts;
  e.sector = sector;
  e.dev = (253u << 20) | 0;
  e.bytes = 4096;
  e.tgid = tgid;
  e.tid = tgid;
  e.cmd_flags = 1;  // REQ_OP_WRITE
  e.ioprio = static_cast<std::uint16_t>(3 << 13 | slot << 3);
  e.op = static_cast<std::uint8_t>(IoOp::kWrite);
  e.kind = static_cast<std::uint8_t>(PhysEventKind::kQueue);
  std::strncpy(e.comm, "writer", sizeof(e.comm));
  return e;
}

TEST(DmRingSource, DeliversWholeRecordsAndKeepsAPartialOneUntilItCompletes) {
  TempFile f;
  std::vector<PhysEvent> in;
  for (unsigned i = 0; i < 5; ++i) in.push_back(record(1000 + i, 8 * i, 1 + i, 42));
  f.append(in.data(), in.size() * sizeof(PhysEvent));
  const PhysEvent last = record(2000, 800, 9, 43);
  f.append(&last, 40);

  pfilter::DmRingSource src(f.path());
  std::vector<PhysEvent> out;
  EXPECT_EQ(src.poll(0, [&](const PhysEvent& e) { out.push_back(e); }), 5u);
  ASSERT_EQ(out.size(), 5u);
  for (unsigned i = 0; i < 5; ++i) {
    EXPECT_EQ(std::memcmp(&out[i], &in[i], sizeof(PhysEvent)), 0) << "record " << i;
  }
  f.append(reinterpret_cast<const char*>(&last) + 40, sizeof(PhysEvent) - 40);
  EXPECT_EQ(src.poll(0, [&](const PhysEvent& e) { out.push_back(e); }), 1u);
  ASSERT_EQ(out.size(), 6u);
  EXPECT_EQ(std::memcmp(&out[5], &last, sizeof(PhysEvent)), 0);
  EXPECT_EQ(src.poll(0, [&](const PhysEvent& e) { out.push_back(e); }), 0u);
}

TEST(DmRingSource, SaysWhyItCannotOpenOrCount) {
  try {
    pfilter::DmRingSource src("/nonexistent/v2p-dm");
    FAIL() << "opened a missing path";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot open /nonexistent/v2p-dm"), std::string::npos)
        << e.what();
  }
  if (!std::filesystem::exists(pfilter::kDmRingPath)) {
    try {
      pfilter::DmRingSource src;
      FAIL() << "opened " << pfilter::kDmRingPath;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("load the dm-v2p module"), std::string::npos)
          << e.what();
    }
  }
  TempFile f;
  pfilter::DmRingSource src(f.path());
  EXPECT_THROW((void)src.stats(), Error);
}

TEST(DmRingSource, RecordsJoinInTheCorrelatorLikeProbeEvents) {
  TempFile f;
  // Two tagged 4 KiB writes of one request and an untagged journal write.
  const PhysEvent a = record(1'000'100, 2048, 7, 42);
  const PhysEvent b = record(1'000'200, 2056, 7, 42);
  PhysEvent journal = record(1'000'300, 9000, 0, 99);
  std::strncpy(journal.comm, "jbd2/dm-0-8", sizeof(journal.comm));
  for (const PhysEvent* e : {&a, &b, static_cast<const PhysEvent*>(&journal)}) {
    f.append(e, sizeof(PhysEvent));
  }

  correlator::Correlator corr;
  corr.declare({1, 1, "vm", "disk", "/images/disk.raw"});
  ContextRecord r;
  r.submit_ns = 1'000'000;
  r.complete_ns = 1'000'500;
  r.voffset = 65536;
  r.length = 8192;
  r.tgid = 42;
  r.vm_id = 1;
  r.vdisk_id = 1;
  r.slot = 7;
  r.op = static_cast<std::uint8_t>(IoOp::kWrite);
  corr.on_record(r);
  pfilter::DmRingSource src(f.path());
  EXPECT_EQ(src.poll(0, [&](const PhysEvent& e) { corr.on_event(e); }), 3u);
  corr.drain();
  EXPECT_EQ(corr.stats().joined_exact, 2u);
  EXPECT_EQ(corr.stats().unattributed, 1u);
  const auto owner = corr.map().whose(DeviceId::from_kernel(a.dev), PhysicalSector{2056});
  ASSERT_TRUE(owner);
  EXPECT_EQ(owner->voffset.value(), 65536u + 4096u);
}

}  // namespace
}  // namespace v2p

namespace v2p::pfilter {
namespace {

// Recorded in the test guest: `dmsetup status v2p0` after two tagged writers, one limited.
constexpr const char* kStatus =
    "8402 0 5 untagged 71 60416 0 0 none:0 0 other 0 0 0 0 none:0 0 143 2048 8388608 0 0 "
    "none:0 0 155 308 1261568 100 0 be:2 305 156 3927 16084992 0 1048576 none:0 0";

TEST(DmV2pStatus, ParsesTheStatusLine) {
  const auto st = parse_dm_v2p_status(kStatus);
  EXPECT_EQ(st.records, 8402u);
  EXPECT_EQ(st.dropped, 0u);
  ASSERT_EQ(st.classes.size(), 5u);
  EXPECT_EQ(st.classes[0], (DmV2pClass{"untagged", 71, 60416, 0, 0, "none:0", 0}));
  EXPECT_EQ(st.classes[3], (DmV2pClass{"155", 308, 1261568, 100, 0, "be:2", 305}));
  EXPECT_EQ(st.classes[4].bps_limit, 1048576u);
}

TEST(DmV2pStatus, RejectsMalformedLinesWithTheField) {
  for (const char* bad :
       {"", "1 2", "1 2 1 untagged 1 2 3 4 none:0", "1 2 1 untagged x 2 3 4 none:0 0",
        "1 2 1 untagged 1 2 3 4 none 0", "1 2 0 trailing"}) {
    EXPECT_THROW((void)parse_dm_v2p_status(bad), Error) << bad;
  }
}

TEST(DmV2pStatus, TheTableIsLinearsSoTopologyMapsThroughIt) {
  const auto t = parse_dm_table(std::string("0 524288 v2p 254:0 ") + "2048\n");
  ASSERT_EQ(t.targets.size(), 1u);
  EXPECT_EQ(t.targets[0].type, "v2p");
  EXPECT_EQ(t.map(10), (DeviceRange{DeviceId::from_major_minor(254, 0), 2058, 524278}));
  EXPECT_EQ(dm_v2p_params("/dev/vdb", 0), "/dev/vdb 0");
}

}  // namespace
}  // namespace v2p::pfilter

namespace v2p {
namespace {

std::string v2p_binary() {
  const char* b = std::getenv("V2P_BINARY");
  return b ? b : "v2p";
}

// On a host without the target (this one has no device-mapper) every `v2p dm` subcommand
// fails with one line saying what is missing, never a crash; the guest test runs them for real.
TEST(V2pDm, SaysWhatIsMissingWithoutTheTarget) {
  if (std::filesystem::exists(pfilter::kDmRingPath)) GTEST_SKIP() << "dm-v2p is loaded here";
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"dm", "status", "v2p-test-none"},
        std::vector<std::string>{"dm", "limit", "v2p-test-none", "untagged", "--iops", "5"},
        std::vector<std::string>{"dm", "watch", "--duration", "0.1"}}) {
    std::vector<std::string> argv{v2p_binary()};
    argv.insert(argv.end(), args.begin(), args.end());
    const auto r = run_command(argv);
    EXPECT_EQ(r.exit_code, 1) << args[1] << ": " << r.err;
    EXPECT_NE(r.err.find("v2p dm: "), std::string::npos) << args[1] << ": " << r.err;
  }
  const auto usage = run_command({v2p_binary(), "dm", "create", "only-a-name"});
  EXPECT_NE(usage.exit_code, 0);
}

}  // namespace
}  // namespace v2p
