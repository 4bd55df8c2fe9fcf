#include "pfilter/topology.hpp"

#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/error.hpp"
#include "common/host_layout/fiemap.hpp"
#include "common/host_layout/mountinfo.hpp"
#include "common/host_layout/unique_fd.hpp"
#include "pfilter/btrfs_chunks.hpp"

namespace v2p::pfilter {
namespace {

// <sys/sysmacros.h> defines major()/minor() as macros, which would rewrite DeviceId's members.
DeviceId from_dev_t(dev_t d) {
  return DeviceId::from_major_minor(gnu_dev_major(d), gnu_dev_minor(d));
}
#undef major
#undef minor

constexpr long kBtrfsMagic = 0x9123683e;

std::string read_line(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::string s;
  std::getline(in, s);
  return s;
}

std::uint64_t read_u64(const std::filesystem::path& p) {
  const std::string s = read_line(p);
  return s.empty() ? 0 : std::stoull(s);
}

DeviceId parse_dev(const std::string& majmin) {
  unsigned ma = 0;
  unsigned mi = 0;
  if (std::sscanf(majmin.c_str(), "%u:%u", &ma, &mi) != 2) return {};
  return DeviceId::from_major_minor(ma, mi);
}

std::optional<DeviceId> block_device_of_source(const std::string& source) {
  struct stat st {};
  if (::stat(source.c_str(), &st) == 0 && S_ISBLK(st.st_mode)) return from_dev_t(st.st_rdev);
  return std::nullopt;
}

}  // namespace

std::optional<BlockDevice> describe_device(DeviceId id, const std::filesystem::path& sys) {
  const auto link =
      sys / "dev/block" / (std::to_string(id.major()) + ":" + std::to_string(id.minor()));
  std::error_code ec;
  const auto dir = std::filesystem::canonical(link, ec);
  if (ec) return std::nullopt;
  BlockDevice d;
  d.id = id;
  d.name = dir.filename().string();
  d.size_sectors = read_u64(dir / "size");
  if (std::filesystem::exists(dir / "partition")) {
    d.kind = DeviceKind::kPartition;
    d.start_sector = read_u64(dir / "start");
    d.parent = parse_dev(read_line(dir.parent_path() / "dev"));
  } else if (std::filesystem::exists(dir / "loop")) {
    d.kind = DeviceKind::kLoop;
    d.backing_file = read_line(dir / "loop/backing_file");
    d.backing_offset = read_u64(dir / "loop/offset");
  } else if (std::filesystem::exists(dir / "dm")) {
    d.kind = DeviceKind::kDeviceMapper;
  } else {
    d.kind = DeviceKind::kDisk;
  }
  return d;
}

DeviceId device_of_node(const std::filesystem::path& node) {
  struct stat st {};
  if (::stat(node.c_str(), &st) != 0) throw system_error("cannot stat " + node.string());
  if (!S_ISBLK(st.st_mode)) throw Error(node.string() + " is not a block device");
  return from_dev_t(st.st_rdev);
}

DeviceId device_of_path(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw system_error("cannot stat " + path.string());
  if (S_ISBLK(st.st_mode)) return from_dev_t(st.st_rdev);
  const DeviceId sdev = from_dev_t(st.st_dev);
  const auto mounts = host_layout::read_mountinfo();
  // A real device number is the answer; an anonymous one (major 0: btrfs, overlay, tmpfs) must
  // be resolved through the mount that holds the file.
  if (sdev.major() != 0) return sdev;
  for (const auto& m : mounts) {
    if (DeviceId::from_major_minor(m.major, m.minor) == sdev) {
      if (auto d = block_device_of_source(m.source)) return *d;
    }
  }
  // btrfs subvolumes get their own anonymous st_dev: take the longest mount point prefix.
  const auto canon = std::filesystem::weakly_canonical(path).string();
  const auto* best = host_layout::mount_holding(mounts, canon);
  if (best != nullptr) {
    if (auto d = block_device_of_source(best->source)) return *d;
  }
  throw Error(path.string() + " is not on a block device (its file system has none)");
}

std::vector<FileExtent> fiemap(const std::filesystem::path& file, std::uint64_t offset,
                               std::uint64_t length) {
  const host_layout::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw system_error("cannot open " + file.string());
  std::vector<FileExtent> out;
  if (!host_layout::walk_fiemap(fd.get(), offset, offset + length, true,
                                [&](const FileExtent& e) { out.push_back(e); })) {
    throw system_error("FIEMAP on " + file.string(), errno);
  }
  return out;
}

std::vector<DeviceRange> map_file_range(const std::filesystem::path& file, std::uint64_t offset,
                                        std::uint64_t length) {
  struct statfs sfs {};
  if (::statfs(file.c_str(), &sfs) != 0) throw system_error("cannot statfs " + file.string());
  const bool btrfs = sfs.f_type == kBtrfsMagic;
  std::optional<BtrfsChunkMap> chunks;
  if (btrfs) chunks.emplace(BtrfsChunkMap::load(file));
  const DeviceId dev = btrfs ? DeviceId{} : device_of_path(file);
  const std::uint64_t end = offset + length;
  std::vector<DeviceRange> out;
  auto emit = [&out](DeviceId d, std::uint64_t byte, std::uint64_t bytes) {
    const std::uint64_t first = byte / kSectorSize;
    const std::uint64_t last = (byte + bytes + kSectorSize - 1) / kSectorSize;
    if (!out.empty() && out.back().device == d && out.back().sector + out.back().sectors == first) {
      out.back().sectors += last - first;  // physically contiguous: one range
    } else {
      out.push_back({d, first, last - first});
    }
  };
  for (const auto& e : fiemap(file, offset, length)) {
    // Inline or not-yet-placed data has no stable device address.
    if (e.flags & (FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DATA_INLINE | FIEMAP_EXTENT_DELALLOC)) {
      continue;
    }
    const std::uint64_t from = std::max(e.logical, offset);
    const std::uint64_t to = std::min(e.logical + e.length, end);
    if (from >= to) continue;
    std::uint64_t phys = e.physical + (from - e.logical);
    std::uint64_t left = to - from;
    while (left > 0) {
      if (!btrfs) {
        emit(dev, phys, left);
        break;
      }
      const auto loc = chunks->map(phys);
      const std::uint64_t n = std::min(left, loc.length);
      emit(loc.device, loc.physical, n);
      phys += n;
      left -= n;
    }
  }
  return out;
}

std::vector<DeviceRange> map_loop_range(const BlockDevice& loop, std::uint64_t sector,
                                        std::uint64_t sectors) {
  if (loop.kind != DeviceKind::kLoop || loop.backing_file.empty()) {
    throw Error(loop.name + " is not a loop device with a backing file");
  }
  std::string backing = loop.backing_file;
  // sysfs appends " (deleted)" when the backing file was unlinked; it cannot be mapped then.
  if (backing.ends_with(" (deleted)")) {
    throw Error("the backing file of " + loop.name + " was deleted; its blocks cannot be mapped");
  }
  return map_file_range(backing, loop.backing_offset + sector * kSectorSize, sectors * kSectorSize);
}

}  // namespace v2p::pfilter
