// Which host block devices the probe watches, counted by the vdisks on them: the probe is
// attached with the first device and detached when the last vdisk on the last device goes.
// The kernel filter only grows (pfilter::Probe::add_device); events of a device no vdisk uses
// any more are dropped here, in user space, until the probe is next re-attached.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "pfilter/probe.hpp"

namespace v2p::agent {

class DeviceWatch {
 public:
  // enabled = false: never attaches (an agent without privileges serves queries only).
  // enabled = false: never attaches (an agent without privileges serves queries only).
  // every_bio: the probe sends every bio instead of only what the map does not know.
  // pin_dir: where the probe pins its maps (the bpftool contract, docs/observe.md) when no other
  // probe owns that directory; "" = never pinned.
  explicit DeviceWatch(bool enabled, bool every_bio = false, std::filesystem::path pin_dir = {})
      : enabled_(enabled), every_bio_(every_bio), pin_dir_(std::move(pin_dir)) {}
  // Adds a user of `devices`. Throws v2p::Error when the probe cannot attach.
  void acquire(const std::vector<DeviceId>& devices);
  void release(const std::vector<DeviceId>& devices);
  [[nodiscard]] bool watching(DeviceId d) const { return active_.contains(d.kernel()); }
  [[nodiscard]] pfilter::Probe* probe() const noexcept { return probe_.get(); }
  [[nodiscard]] std::size_t device_count() const noexcept { return users_.size(); }
  [[nodiscard]] std::uint64_t attaches() const noexcept { return attaches_; }
  // An opaque export's backend: the window join needs every one of its (untagged) bios, so the
  // probe sends them even while it suppresses repeats. Returns a line for the log when the
  // probe had to be re-attached with the full stream (more backends than its set holds).
  std::string add_backend(std::uint32_t tgid);
  // The process is gone (a passively attached QEMU that exited): its entry is free again.
  void remove_backend(std::uint32_t tgid);
  // Whether the probe sends only news (docs/pfilter.md) or every bio.
  [[nodiscard]] bool every_bio() const noexcept { return every_bio_; }
  // Where the running probe's maps are pinned ("" when unpinned or not attached).
  [[nodiscard]] std::filesystem::path pinned_at() const;

 private:
  std::unique_ptr<pfilter::Probe> attach(const std::vector<DeviceId>& devices);

  bool enabled_;
  bool every_bio_;
  std::vector<std::uint32_t> backends_;
  std::filesystem::path pin_dir_;
  std::map<std::uint32_t, unsigned> users_;  // kernel device number -> vdisks on it
  std::unordered_set<std::uint32_t> active_;
  std::unique_ptr<pfilter::Probe> probe_;
  std::uint64_t attaches_ = 0;
};

// The devices the probe must watch for an image: the block device of its file system (the
// device itself for a block-device image) and, for a partition, its disk. Throws v2p::Error
// (missing image, no block device below it).
std::vector<DeviceId> devices_for_image(const std::string& image);

}  // namespace v2p::agent
