#include "vfilter/image_file.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <fmt/core.h>

#include <algorithm>

#include "common/error.hpp"

namespace v2p::vfilter {

namespace {

// btrfs keeps checksums of a file's data unless the file is NOCOW; with checksums it writes
// O_DIRECT data through the page cache.
bool btrfs_with_data_checksums(int fd) {
  constexpr long kBtrfsSuperMagic = 0x9123683e;
  struct statfs fs {};
  if (::fstatfs(fd, &fs) != 0 || fs.f_type != kBtrfsSuperMagic) return false;
  int flags = 0;
  if (::ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0) return false;
  return (flags & FS_NOCOW_FL) == 0;
}

// The direct-I/O alignment the kernel reports (statx STATX_DIOALIGN); 512 when it does not say.
std::uint32_t direct_io_alignment(int fd) {
  struct statx stx {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
      (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align != 0) {
    return std::max<std::uint32_t>(stx.stx_dio_offset_align, stx.stx_dio_mem_align);
  }
  return 512;
}

}  // namespace

ImageFile::ImageFile(const std::filesystem::path& path, bool read_only, bool want_direct)
    : path_(std::filesystem::absolute(path)) {
  const int mode = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  buffered_fd_ = ::open(path_.c_str(), mode);
  if (buffered_fd_ < 0) {
    const int err = errno;
    if (err == ENOENT) {
      throw Error(
          fmt::format("vdisk image {} does not exist; create it first, e.g. `qemu-img create "
                      "-f raw {} 10G`",
                      path_.string(), path_.string()));
    }
    throw system_error(fmt::format("cannot open vdisk image {}{}", path_.string(),
                                   read_only ? ""
                                             : " for writing (use --read-only to export it "
                                               "read-only)"),
                       err);
  }
  struct stat st {};
  if (::fstat(buffered_fd_, &st) != 0) {
    const int err = errno;
    ::close(buffered_fd_);
    throw system_error("cannot stat " + path_.string(), err);
  }
  if (S_ISBLK(st.st_mode)) {
    std::uint64_t bytes = 0;
    if (::ioctl(buffered_fd_, BLKGETSIZE64, &bytes) != 0) {
      const int err = errno;
      ::close(buffered_fd_);
      throw system_error("cannot read the size of block device " + path_.string(), err);
    }
    size_ = bytes;
  } else if (S_ISREG(st.st_mode)) {
    size_ = static_cast<std::uint64_t>(st.st_size);
  } else {
    ::close(buffered_fd_);
    throw Error(
        fmt::format("vdisk image {} is neither a regular file nor a block device", path_.string()));
  }
  writes_buffered_ = !read_only && S_ISREG(st.st_mode) && btrfs_with_data_checksums(buffered_fd_);
  if (want_direct) {
    direct_fd_ = ::open(path_.c_str(), mode | O_DIRECT);
    // EINVAL is what file systems without O_DIRECT (tmpfs) answer: serve buffered instead.
    if (direct_fd_ < 0 && errno != EINVAL) {
      const int err = errno;
      ::close(buffered_fd_);
      throw system_error("cannot open vdisk image " + path_.string() + " with O_DIRECT", err);
    }
    if (direct_fd_ >= 0) align_ = direct_io_alignment(direct_fd_);
  }
}

ImageFile::~ImageFile() {
  if (direct_fd_ >= 0) ::close(direct_fd_);
  if (buffered_fd_ >= 0) ::close(buffered_fd_);
}

}  // namespace v2p::vfilter
