// The one FIEMAP walker (FS_IOC_FIEMAP): a file's extents as its file system reports them, with
// the flags kept, for the correlator's ground truth, the cache's origin keys and the probe's
// topology alike. `physical` is in the file system's address space (bytes on its device, except
// btrfs: logical addresses, which btrfs_chunks maps to devices).
#pragma once

#include <cstdint>
#include <functional>

namespace v2p::host_layout {

struct FiemapExtent {
  std::uint64_t logical = 0;
  std::uint64_t physical = 0;
  std::uint64_t length = 0;
  std::uint32_t flags = 0;  // FIEMAP_EXTENT_*
  bool placeable = false;   // a real, aligned, unencoded location a bio could read
  bool unwritten = false;   // allocated, reads as zeros
};

// Walks the FIEMAP of [start, end) of an open file in batches, calling `visit` per extent in
// file order (extents may start before `start`). `sync` flushes delayed allocation first.
// Returns false when the ioctl fails (errno says why; the file system may have no FIEMAP).
bool walk_fiemap(int fd, std::uint64_t start, std::uint64_t end, bool sync,
                 const std::function<void(const FiemapExtent&)>& visit);

}  // namespace v2p::host_layout
