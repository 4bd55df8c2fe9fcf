#include "agent/device_watch.hpp"

#include <fmt/core.h>

#include <filesystem>

#include "common/error.hpp"
#include "pfilter/topology.hpp"

namespace v2p::agent {

void DeviceWatch::acquire(const std::vector<DeviceId>& devices) {
  if (!enabled_) return;
  std::vector<DeviceId> fresh;
  for (const auto d : devices) {
    if (users_[d.kernel()]++ == 0) fresh.push_back(d);
  }
  if (fresh.empty()) return;
  try {
    if (!probe_) {
      pfilter::ProbeOptions options;
      options.devices = fresh;
      // Pinned where an operator's bpftool looks, unless an operator's `v2p probe` owns the
      // directory: then unpinned, beside it.
      options.pin = !pin_dir_.empty();
      options.pin_dir = pin_dir_;
      try {
        probe_ = pfilter::Probe::attach(options);
      } catch (const Error&) {
        if (!options.pin) throw;
        options.pin = false;
        probe_ = pfilter::Probe::attach(options);
      }
      ++attaches_;
    } else {
      for (const auto d : fresh) probe_->add_device(d);
    }
  } catch (...) {
    for (const auto d : devices) {
      if (--users_[d.kernel()] == 0) users_.erase(d.kernel());
    }
    throw;
  }
  for (const auto d : fresh) active_.insert(d.kernel());
}

void DeviceWatch::release(const std::vector<DeviceId>& devices) {
  if (!enabled_) return;
  for (const auto d : devices) {
    const auto it = users_.find(d.kernel());
    if (it == users_.end()) continue;
    if (--it->second == 0) {
      users_.erase(it);
      active_.erase(d.kernel());
    }
  }
  if (users_.empty()) probe_.reset();  // detaches the programs
}

std::filesystem::path DeviceWatch::pinned_at() const {
  return probe_ ? probe_->pin_dir() : std::filesystem::path();
}

std::vector<DeviceId> devices_for_image(const std::string& image) {
  std::error_code ec;
  if (image.empty()) throw Error("the export declared no image path");
  if (!std::filesystem::exists(image, ec)) throw Error(fmt::format("image {} is missing", image));
  const DeviceId fs = pfilter::device_of_path(image);
  std::vector<DeviceId> out{fs};
  if (const auto d = pfilter::describe_device(fs);
      d && d->kind == pfilter::DeviceKind::kPartition) {
    out.push_back(d->parent);
  }
  return out;
}

}  // namespace v2p::agent
