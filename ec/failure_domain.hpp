// Which whole disk a store directory lives on: two chunks of a container must not share one.
// Resolution, from the directory's st_dev:
//   - a partition resolves to its disk (/sys/dev/block/MAJ:MIN has a `partition` file, the disk
//     is the parent directory);
//   - a loop device resolves to the device holding its backing file (recursively);
//   - a device-mapper device with exactly one slave resolves to that slave;
//   - an anonymous device (major 0: btrfs, tmpfs, overlay) is looked up in /proc/self/mountinfo;
//     when the mount source is a block device that device is used, otherwise the file system
//     itself is the domain (a tmpfs mount is one domain).
#pragma once

#include <sys/types.h>

#include <compare>
#include <filesystem>
#include <string>
#include <tuple>

namespace v2p::ec {

struct FailureDomain {
  unsigned major = 0;
  unsigned minor = 0;
  std::string name;  // "vda", "sdb", "tmpfs 0:45"
  auto operator<=>(const FailureDomain& o) const {
    return std::tie(major, minor) <=> std::tie(o.major, o.minor);
  }
  bool operator==(const FailureDomain& o) const { return major == o.major && minor == o.minor; }
  [[nodiscard]] std::string label() const;  // "vda (254:0)"
};

// Throws v2p::Error when `path` cannot be stat'ed.
FailureDomain failure_domain_of(const std::filesystem::path& path);

// The same for a device number; `sysfs` and `mountinfo` are parameters so tests can point them
// at a fixture tree.
FailureDomain failure_domain_of_device(
    dev_t dev, const std::filesystem::path& sysfs = "/sys",
    const std::filesystem::path& mountinfo = "/proc/self/mountinfo");

}  // namespace v2p::ec
