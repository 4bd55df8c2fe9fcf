// Writes what a probe sees into a stream file: each device is declared (with the devices below
// it) before the first event that names it, and ring-buffer losses become LostEvents frames.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <unordered_set>

#include "common/record_file.hpp"
#include "pfilter/device.hpp"
#include "v2p/records.hpp"

namespace v2p::pfilter {

class EventRecorder {
 public:
  using Describe = std::function<std::optional<BlockDevice>(DeviceId)>;
  // `describe` defaults to the live topology (describe_device + the loop's backing device).
  explicit EventRecorder(StreamWriter& out, Describe describe = {});

  void record(const PhysEvent& e);
  // Writes a LostEvents frame when `lost_total` grew since the last one.
  void record_lost(std::uint64_t ts_ns, std::uint64_t lost_total);
  // Declares `d` (and what lies below it) now, if not declared yet.
  void declare(DeviceId d);

  [[nodiscard]] std::uint64_t lost_total() const noexcept { return lost_; }

 private:
  StreamWriter& out_;
  Describe describe_;
  std::unordered_set<DeviceId> declared_;
  std::uint64_t lost_ = 0;
};

// The live description of a device plus, for a loop device, the device holding its backing file
// (as `parent`), so a recorded stream knows the whole stack.
std::optional<BlockDevice> describe_live(DeviceId d);

}  // namespace v2p::pfilter
