// Where a block device sits in the stack, read from sysfs: disk, partition (start, parent), loop
// (backing file and offset), device-mapper (table); and the mapping of a file range or a loop
// device range down to sectors of the device below.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

#include "common/host_layout/fiemap.hpp"
#include "pfilter/device.hpp"
#include "v2p/types.hpp"

namespace v2p::pfilter {

// The device behind /sys/dev/block/MAJ:MIN, or nullopt when there is none. `sys` lets tests
// point at a recorded tree.
std::optional<BlockDevice> describe_device(DeviceId id, const std::filesystem::path& sys = "/sys");

// The device a block special file names; throws v2p::Error if `node` is not one.
DeviceId device_of_node(const std::filesystem::path& node);

// The block device holding `path`: the device itself for a device node, otherwise the device of
// the file system it lives on. btrfs gives files an anonymous st_dev, so the answer comes from
// the mount table (/proc/self/mountinfo), never from st_dev alone. Throws v2p::Error.
DeviceId device_of_path(const std::filesystem::path& path);

// A byte range of a file as FIEMAP reports it (common/host_layout/fiemap.hpp): `physical` is in
// the file system's address space (bytes on its device, except btrfs: logical addresses).
using FileExtent = host_layout::FiemapExtent;
// Flushes dirty data first (FIEMAP_FLAG_SYNC) so delayed allocation has happened.
std::vector<FileExtent> fiemap(const std::filesystem::path& file, std::uint64_t offset,
                               std::uint64_t length);

struct DeviceRange {
  DeviceId device;
  std::uint64_t sector = 0;
  std::uint64_t sectors = 0;
  bool operator==(const DeviceRange&) const = default;
};

// The sectors that hold bytes [offset, offset+length) of `file`, on the block devices below its
// file system (btrfs logical addresses translated through the chunk tree). Holes and
// unwritten-in-memory extents are left out; unaligned ends are widened to whole sectors.
std::vector<DeviceRange> map_file_range(const std::filesystem::path& file, std::uint64_t offset,
                                        std::uint64_t length);

// A range of a loop device mapped through its backing file to the device below.
std::vector<DeviceRange> map_loop_range(const BlockDevice& loop, std::uint64_t sector,
                                        std::uint64_t sectors);

}  // namespace v2p::pfilter
