#include "vfilter/file_backend.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "common/host_layout/aligned_buffer.hpp"
#include "vfilter/tagged_workers.hpp"

namespace v2p::vfilter {
namespace {

bool aligned_memory(const void* p, std::uint32_t align) {
  return reinterpret_cast<std::uintptr_t>(p) % align == 0;
}

}  // namespace

const std::byte* zero_chunk() noexcept {
  static const host_layout::AlignedBuffer chunk = [] {
    host_layout::AlignedBuffer b;
    if (b.try_resize(kZeroChunk)) std::memset(b.data(), 0, kZeroChunk);
    return b;
  }();
  return chunk.data();
}

std::uint32_t FileBackend::buffer_align() const {
  return std::max<std::uint32_t>(4096, image_.direct_align());
}

FileBackend::FileBackend(const std::filesystem::path& image, bool read_only, bool want_direct)
    : image_(image, read_only, want_direct), read_only_(read_only) {}

int FileBackend::read(const IoTarget&, std::span<std::byte> out, std::uint64_t offset) {
  const auto len = static_cast<std::uint32_t>(out.size());
  int fd = image_.fd_for(offset, len);
  if (!aligned_memory(out.data(), image_.direct_align())) fd = image_.buffered_fd();
  const int n = pread_all(fd, out.data(), len, offset);
  if (n < 0) return n;
  // Past the end of a file that shrank under us: zeros, as a block device would not have it.
  if (static_cast<std::uint32_t>(n) < len) std::memset(out.data() + n, 0, len - n);
  return 0;
}

int FileBackend::write(const IoTarget& who, std::span<const std::byte> data, std::uint64_t offset,
                       Fua fua) {
  if (read_only_) return -EROFS;
  const auto len = static_cast<std::uint32_t>(data.size());
  int fd = image_.fd_for(offset, len);
  if (!aligned_memory(data.data(), image_.direct_align())) fd = image_.buffered_fd();
  const int n = pwrite_all(fd, data.data(), len, offset);
  if (n < 0) return n;
  if (static_cast<std::uint32_t>(n) < len) return -ENOSPC;
  return fua == Fua::kYes ? flush(who) : 0;
}

int FileBackend::write_zeroes(const IoTarget& who, std::uint64_t offset, std::uint64_t length,
                              MayPunch may_punch, Fua fua) {
  if (read_only_) return -EROFS;
  const int mode = FALLOC_FL_KEEP_SIZE |
                   (may_punch == MayPunch::kYes ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE);
  if (::fallocate(image_.buffered_fd(), mode, static_cast<off_t>(offset),
                  static_cast<off_t>(length)) != 0) {
    if (errno != EOPNOTSUPP && errno != ENODEV) return -errno;
    // No fallocate here: write the zeros.
    for (std::uint64_t done = 0; done < length;) {
      const auto n = static_cast<std::uint32_t>(std::min<std::uint64_t>(length - done, kZeroChunk));
      const int w = pwrite_all(image_.fd_for(offset + done, n), zero_chunk(), n, offset + done);
      if (w < 0) return w;
      if (static_cast<std::uint32_t>(w) < n) return -ENOSPC;
      done += n;
    }
  }
  return fua == Fua::kYes ? flush(who) : 0;
}

int FileBackend::trim(const IoTarget&, std::uint64_t offset, std::uint64_t length) {
  if (read_only_) return -EROFS;
  if (::fallocate(image_.buffered_fd(), FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE,
                  static_cast<off_t>(offset), static_cast<off_t>(length)) != 0 &&
      errno != EOPNOTSUPP && errno != ENODEV) {
    return -errno;
  }
  return 0;  // trim is advisory
}

int FileBackend::flush(const IoTarget&) {
  // A full fsync: it also covers metadata (allocation of punched and zeroed ranges).
  return ::fsync(image_.buffered_fd()) == 0 ? 0 : -errno;
}

}  // namespace v2p::vfilter
