#include "pfilter/replay.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "pfilter/recorder.hpp"

namespace v2p::pfilter {
namespace {

class TempFile {
 public:
  TempFile()
      : path_(std::filesystem::temp_directory_path() /
              ("v2p-replay-" + std::to_string(::getpid()) + ".v2p")) {}
  ~TempFile() { std::filesystem::remove(path_); }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

const DeviceId kLoop = DeviceId::from_major_minor(7, 2);
const DeviceId kDisk = DeviceId::from_major_minor(254, 0);

// A fixed topology instead of this machine's: loop2 backed by a file on vda.
std::optional<BlockDevice> fake_describe(DeviceId d) {
  if (d == kLoop) {
    return BlockDevice{kLoop,   DeviceKind::kLoop,  kDisk, 0, 1 << 20, 4096,
                       "loop2", "/var/tmp/v2p.img", ""};
  }
  if (d == kDisk) return BlockDevice{kDisk, DeviceKind::kDisk, {}, 0, 1 << 30, 0, "vda", "", ""};
  return std::nullopt;
}

PhysEvent event(std::uint64_t ts, std::uint64_t sector) {
  PhysEvent e;
  e.ts_ns = ts;
  e.dev = kLoop.kernel();
  e.sector = sector;
  e.bytes = 4096;
  e.tgid = 7;
  return e;
}

TEST(Replay, RecordsDeclarationsBeforeEventsAndLosses) {
  TempFile f;
  {
    StreamWriter out(f.path());
    EventRecorder rec(out, fake_describe);
    rec.record(event(1, 100));
    rec.record(event(2, 200));
    rec.record_lost(3, 0);  // nothing lost: no frame
    rec.record_lost(4, 17);
    rec.record_lost(5, 17);  // unchanged: no frame
    rec.record(event(6, 300));
    out.flush();
  }
  std::vector<std::string> order;
  std::vector<BlockDevice> devices;
  ReplayHandlers h;
  // tagged('E', 100) is "E100": built by appends, since g++ 12 -O3 misreads the inlined
  // `"E" + std::to_string(…)` (-Wrestrict false positive, GCC PR105329).
  auto tagged = [](char kind, std::uint64_t n) {
    std::string s(1, kind);
    s += std::to_string(n);
    return s;
  };
  h.on_event = [&](const PhysEvent& e) { order.push_back(tagged('E', e.sector)); };
  h.on_device = [&](const BlockDevice& d) {
    order.push_back("D" + d.name);
    devices.push_back(d);
  };
  h.on_lost = [&](const LostEvents& l) { order.push_back(tagged('L', l.lost_total)); };
  const auto c = replay_stream(f.path(), h);
  EXPECT_EQ(order, (std::vector<std::string>{"Dloop2", "Dvda", "E100", "E200", "L17", "E300"}));
  EXPECT_EQ(c.events, 3U);
  EXPECT_EQ(c.devices, 2U);
  EXPECT_EQ(c.lost_frames, 1U);
  EXPECT_EQ(c.lost_total, 17U);
  ASSERT_EQ(devices.size(), 2U);
  EXPECT_EQ(devices[0], *fake_describe(kLoop));
}

TEST(Replay, DeviceDeclarationRoundTrips) {
  const auto d = *fake_describe(kLoop);
  auto bytes = encode_device_declaration(d);
  EXPECT_EQ(decode_device_declaration(bytes), d);
  bytes.pop_back();
  EXPECT_THROW(decode_device_declaration(bytes), Error);
  bytes = encode_device_declaration(d);
  bytes.push_back(std::byte{0});
  EXPECT_THROW(decode_device_declaration(bytes), Error);
  bytes = encode_device_declaration(d);
  bytes[8] = std::byte{99};  // kind
  EXPECT_THROW(decode_device_declaration(bytes), Error);
}

TEST(Replay, RejectsWhatIsNotAStream) {
  TempFile f;
  { std::ofstream(f.path()) << "hello"; }
  EXPECT_THROW(replay_stream(f.path(), {}), Error);
}

}  // namespace
}  // namespace v2p::pfilter
