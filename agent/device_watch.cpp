#include "agent/device_watch.hpp"

#include <fmt/core.h>

#include <algorithm>
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
      probe_ = attach(fresh);
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

std::unique_ptr<pfilter::Probe> DeviceWatch::attach(const std::vector<DeviceId>& devices) {
  pfilter::ProbeOptions options;
  options.devices = devices;
  options.every_bio = every_bio_;
  // Pinned where an operator's bpftool looks, unless an operator's `v2p probe` owns the
  // directory: then unpinned, beside it.
  options.pin = !pin_dir_.empty();
  options.pin_dir = pin_dir_;
  std::unique_ptr<pfilter::Probe> probe;
  try {
    probe = pfilter::Probe::attach(options);
  } catch (const Error&) {
    if (!options.pin) throw;
    options.pin = false;
    probe = pfilter::Probe::attach(options);
  }
  for (const auto t : backends_) probe->add_full_stream_process(t);
  ++attaches_;
  return probe;
}

std::string DeviceWatch::add_backend(std::uint32_t tgid) {
  if (std::find(backends_.begin(), backends_.end(), tgid) != backends_.end()) return {};
  backends_.push_back(tgid);
  if (!probe_ || every_bio_) return {};
  try {
    probe_->add_full_stream_process(tgid);
    return {};
  } catch (const Error&) {
    // More backends than the kernel's set holds: every bio for everyone, from a new probe.
    every_bio_ = true;
    std::vector<DeviceId> devices;
    for (const auto& [dev, users] : users_) devices.push_back(DeviceId::from_kernel(dev));
    probe_.reset();
    probe_ = attach(devices);
    return fmt::format("{} backend processes: the probe now sends every bio", backends_.size());
  }
}

void DeviceWatch::remove_backend(std::uint32_t tgid) {
  backends_.erase(std::remove(backends_.begin(), backends_.end(), tgid), backends_.end());
  if (probe_) probe_->remove_full_stream_process(tgid);
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
