#include "common/host_layout/fiemap.hpp"

#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <cstddef>
#include <vector>

namespace v2p::host_layout {
namespace {

// Extents whose bytes no bio at `physical` would read.
constexpr std::uint32_t kUnplaceable = FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC |
                                       FIEMAP_EXTENT_ENCODED | FIEMAP_EXTENT_DATA_ENCRYPTED |
                                       FIEMAP_EXTENT_NOT_ALIGNED | FIEMAP_EXTENT_DATA_INLINE |
                                       FIEMAP_EXTENT_DATA_TAIL;

}  // namespace

bool walk_fiemap(int fd, std::uint64_t start, std::uint64_t end, bool sync,
                 const std::function<void(const FiemapExtent&)>& visit) {
  constexpr std::size_t kBatch = 256;
  std::vector<std::byte> buf(sizeof(struct fiemap) + kBatch * sizeof(struct fiemap_extent));
  std::uint32_t flags = sync ? FIEMAP_FLAG_SYNC : 0;
  while (start < end) {
    std::fill(buf.begin(), buf.end(), std::byte{0});
    auto* fm = reinterpret_cast<struct fiemap*>(buf.data());
    fm->fm_start = start;
    fm->fm_length = end - start;
    fm->fm_flags = flags;
    fm->fm_extent_count = kBatch;
    if (::ioctl(fd, FS_IOC_FIEMAP, fm) != 0) return false;
    flags = 0;  // one sync is enough
    if (fm->fm_mapped_extents == 0) break;
    bool last = false;
    for (std::uint32_t i = 0; i < fm->fm_mapped_extents; ++i) {
      const auto& x = fm->fm_extents[i];
      last = last || (x.fe_flags & FIEMAP_EXTENT_LAST);
      start = x.fe_logical + x.fe_length;
      visit({x.fe_logical, x.fe_physical, x.fe_length, x.fe_flags, (x.fe_flags & kUnplaceable) == 0,
             (x.fe_flags & FIEMAP_EXTENT_UNWRITTEN) != 0});
    }
    if (last) break;
  }
  return true;
}

}  // namespace v2p::host_layout
