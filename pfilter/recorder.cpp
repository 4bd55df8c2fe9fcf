#include "pfilter/recorder.hpp"

#include "common/error.hpp"
#include "pfilter/topology.hpp"

namespace v2p::pfilter {

std::optional<BlockDevice> describe_live(DeviceId d) {
  auto dev = describe_device(d);
  if (dev && dev->kind == DeviceKind::kLoop && !dev->backing_file.empty()) {
    try {
      dev->parent = device_of_path(dev->backing_file);
    } catch (const Error&) {
      // Backing file on a file system without a block device (tmpfs): nothing below.
    }
  }
  return dev;
}

EventRecorder::EventRecorder(StreamWriter& out, Describe describe)
    : out_(out), describe_(describe ? std::move(describe) : Describe(describe_live)) {}

void EventRecorder::declare(DeviceId d) {
  // Walk down the stack: a partition's disk, a loop device's backing device, and so on.
  for (int depth = 0; depth < 8 && d != DeviceId{} && !declared_.contains(d); ++depth) {
    declared_.insert(d);
    const auto dev = describe_(d);
    if (!dev) return;
    write_device_declaration(out_, *dev);
    d = dev->parent;
  }
}

void EventRecorder::record(const PhysEvent& e) {
  declare(e.device());
  if (e.old_dev != 0) declare(DeviceId::from_kernel(e.old_dev));
  out_.write(e);
}

void EventRecorder::record_lost(std::uint64_t ts_ns, std::uint64_t lost_total) {
  if (lost_total <= lost_) return;
  lost_ = lost_total;
  out_.write(LostEvents{ts_ns, lost_total});
}

}  // namespace v2p::pfilter
