#include "policy/cache/origin_resolver.hpp"

#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/error.hpp"

namespace v2p::cache {
namespace {

DeviceId from_dev_t(dev_t d) {
  return DeviceId::from_major_minor(::major(d), ::minor(d));
}

// The device of a (single-device) btrfs: files carry an anonymous st_dev there.
DeviceId btrfs_device(int fd, const std::filesystem::path& image) {
  btrfs_ioctl_dev_info_args info{};
  info.devid = 1;
  if (::ioctl(fd, BTRFS_IOC_DEV_INFO, &info) != 0)
    throw system_error("cannot find the btrfs device holding " + image.string());
  struct stat st {};
  if (::stat(reinterpret_cast<const char*>(info.path), &st) != 0 || !S_ISBLK(st.st_mode))
    throw Error("the btrfs device of " + image.string() + " is not a block device");
  return from_dev_t(st.st_rdev);
}

}  // namespace

FiemapResolver::FiemapResolver(const std::filesystem::path& image) : image_(image) {
  fd_ = ::open(image.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw system_error("cannot open " + image.string() + " to read its layout");
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    ::close(fd_);
    throw system_error("cannot stat " + image.string());
  }
  try {
    if (S_ISBLK(st.st_mode)) {
      // A block device is its own layout: offset o is sector o / 512 of that device.
      device_ = from_dev_t(st.st_rdev);
      Extent whole{~0ULL / 2, 0, true};
      extents_.emplace(0, whole);
      known_ = true;
      return;
    }
    btrfs_ = correlator::on_btrfs(image);
    device_ = btrfs_ ? btrfs_device(fd_, image) : from_dev_t(st.st_dev);
    if (btrfs_) chunks_ = correlator::btrfs_chunks(image);
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

FiemapResolver::~FiemapResolver() {
  if (fd_ >= 0) ::close(fd_);
}

std::map<std::uint64_t, FiemapResolver::Extent> FiemapResolver::learn(std::uint64_t offset,
                                                                      std::uint64_t length) {
  std::map<std::uint64_t, Extent> out;
  const std::uint64_t end =
      length > FIEMAP_MAX_OFFSET - offset ? FIEMAP_MAX_OFFSET : offset + length;
  ++fiemap_calls_;
  // A failing FIEMAP leaves the layout unknown: nothing in the range is cacheable.
  correlator::walk_fiemap(fd_, offset, end, !known_, [&](const correlator::FiemapExtent& x) {
    const std::uint64_t lo = std::max<std::uint64_t>(x.logical, offset);
    const std::uint64_t hi = std::min<std::uint64_t>(x.logical + x.length, end);
    if (lo >= hi) return;
    // Preallocated (unwritten) ranges read as zeros without a bio: not cacheable either.
    const bool placed = x.placeable && !x.unwritten;
    std::vector<correlator::LayoutExtent> pieces{
        {lo, hi - lo, x.physical + (lo - x.logical), false}};
    if (placed && btrfs_) {
      try {
        pieces = correlator::btrfs_to_device(pieces, chunks_);
      } catch (const Error&) {
        // A chunk allocated since we read the tree: read it again, once.
        try {
          chunks_ = correlator::btrfs_chunks(image_);
          pieces = correlator::btrfs_to_device(pieces, chunks_);
        } catch (const Error&) {
          out[lo] = Extent{hi - lo, 0, false};
          return;
        }
      }
    }
    for (const auto& p : pieces) out[p.logical] = Extent{p.length, p.device_offset, placed};
  });
  return out;
}

void FiemapResolver::replace(std::uint64_t offset, std::uint64_t length,
                             std::map<std::uint64_t, Extent> fresh) {
  const std::uint64_t end = offset + length;
  std::unique_lock lock(mu_);
  // Cut the extents overlapping [offset, end), keeping what lies outside.
  auto it = extents_.upper_bound(offset);
  if (it != extents_.begin()) --it;
  std::vector<std::pair<std::uint64_t, Extent>> keep;
  while (it != extents_.end() && it->first < end) {
    const std::uint64_t lo = it->first, hi = lo + it->second.length;
    if (hi <= offset) {
      ++it;
      continue;
    }
    if (lo < offset)
      keep.emplace_back(lo, Extent{offset - lo, it->second.device_offset, it->second.placed});
    if (hi > end)
      keep.emplace_back(end,
                        Extent{hi - end, it->second.device_offset + (end - lo), it->second.placed});
    it = extents_.erase(it);
  }
  for (auto& [k, e] : keep) extents_[k] = e;
  for (auto& [k, e] : fresh) extents_[k] = e;
}

void FiemapResolver::ensure_known() {
  {
    std::shared_lock lock(mu_);
    if (known_) return;
  }
  std::lock_guard learning(learn_mu_);
  if (known_) return;
  auto all = learn(0, FIEMAP_MAX_OFFSET);
  replace(0, FIEMAP_MAX_OFFSET, std::move(all));
  std::unique_lock lock(mu_);
  known_ = true;
}

std::optional<CacheKey> FiemapResolver::locate(std::uint64_t offset, std::uint64_t length) {
  ensure_known();
  std::shared_lock lock(mu_);
  auto it = extents_.upper_bound(offset);
  if (it == extents_.begin()) return std::nullopt;
  --it;
  if (it->first + it->second.length <= offset || !it->second.placed) return std::nullopt;
  const std::uint64_t phys = it->second.device_offset + (offset - it->first);
  if (phys % kSectorSize != 0) return std::nullopt;
  // Contiguous across neighbouring extents that continue on the device.
  std::uint64_t covered = it->first + it->second.length;
  std::uint64_t next_phys = it->second.device_offset + it->second.length;
  while (covered < offset + length) {
    ++it;
    if (it == extents_.end() || it->first != covered || !it->second.placed ||
        it->second.device_offset != next_phys) {
      return std::nullopt;
    }
    covered += it->second.length;
    next_phys += it->second.length;
  }
  return CacheKey{device_, PhysicalSector(phys / kSectorSize)};
}

std::vector<PhysicalRun> FiemapResolver::runs(std::uint64_t offset, std::uint64_t length) {
  ensure_known();
  std::vector<PhysicalRun> out;
  const std::uint64_t end = offset + length;
  std::shared_lock lock(mu_);
  auto it = extents_.upper_bound(offset);
  if (it != extents_.begin()) --it;
  for (; it != extents_.end() && it->first < end; ++it) {
    const std::uint64_t lo = std::max(it->first, offset);
    const std::uint64_t hi = std::min(it->first + it->second.length, end);
    if (lo >= hi || !it->second.placed) continue;
    const std::uint64_t phys = it->second.device_offset + (lo - it->first);
    out.push_back({lo, hi - lo, CacheKey{device_, PhysicalSector(phys / kSectorSize)}});
  }
  return out;
}

void FiemapResolver::refresh(std::uint64_t offset, std::uint64_t length) {
  if (length == 0) return;
  ensure_known();
  std::lock_guard learning(learn_mu_);
  {
    std::shared_lock lock(mu_);
    // A block device does not move its blocks.
    if (extents_.size() == 1 && extents_.begin()->second.length == ~0ULL / 2) return;
  }
  auto fresh = learn(offset, length);
  replace(offset, length, std::move(fresh));
}

}  // namespace v2p::cache
