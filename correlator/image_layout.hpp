// Ground truth for verification: where the bytes of a vdisk image really are on the host file
// system's device, from FIEMAP (raw images), translated through the btrfs chunk tree on btrfs,
// and composed with `qemu-img map` for qcow2 images.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <vector>

#include "common/host_layout/fiemap.hpp"

namespace v2p::correlator {

// A piece of a file (or of a vdisk) and the device byte offset holding it.
struct LayoutExtent {
  std::uint64_t logical = 0;  // byte offset in the file (or, for image_layout, the vdisk)
  std::uint64_t length = 0;
  std::uint64_t device_offset = 0;  // byte offset on the file system's (single) device
  bool unwritten = false;           // allocated, reads as zeroes (no bios on read)
};

// A btrfs logical range and where it lives on the device (first stripe).
struct BtrfsChunk {
  std::uint64_t logical = 0;
  std::uint64_t length = 0;
  std::uint64_t device_offset = 0;
  std::uint64_t devid = 0;
  std::uint64_t type = 0;
  std::uint16_t num_stripes = 0;
};

// FIEMAP (with FIEMAP_FLAG_SYNC) of a file, physical addresses as the file system reports them
// (btrfs: logical addresses). Extents whose place is unknown, inline or encoded are left out.
// Throws v2p::Error.
std::vector<LayoutExtent> fiemap(const std::filesystem::path& file);

// One extent as FIEMAP reports it, and the walker, for callers that keep their own view of a
// file's layout: the host-layout module's (common/host_layout/fiemap.hpp).
using host_layout::FiemapExtent;
using host_layout::walk_fiemap;

// True when `path` lives on btrfs (statfs f_type).
bool on_btrfs(const std::filesystem::path& path);

// The chunk tree of the btrfs holding `path` (BTRFS_IOC_TREE_SEARCH; needs CAP_SYS_ADMIN).
std::vector<BtrfsChunk> btrfs_chunks(const std::filesystem::path& path);

// Translates btrfs logical addresses to device offsets, splitting at chunk boundaries.
// Throws v2p::Error for an address in no chunk.
std::vector<LayoutExtent> btrfs_to_device(const std::vector<LayoutExtent>& logical,
                                          const std::vector<BtrfsChunk>& chunks);

// Device byte offsets of `file` on its file system's device (FIEMAP, btrfs translated).
std::vector<LayoutExtent> file_layout(const std::filesystem::path& file);

// True when the file starts with the qcow2 magic.
bool is_qcow2(const std::filesystem::path& image);

// The vdisk → device layout of an image: file_layout for raw images; for qcow2,
// `qemu-img map --output=json -U` (guest offset → file offset) composed with file_layout. -U
// reads the image while a qemu-storage-daemon holds it; the daemon's metadata cache must have
// been flushed (a guest flush does that) for the tables on disk to be current.
std::vector<LayoutExtent> image_layout(const std::filesystem::path& image);

}  // namespace v2p::correlator
