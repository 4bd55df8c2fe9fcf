// A vdisk image (raw file or block device) opened for the io_uring data path: an O_DIRECT
// descriptor when the file system supports it, plus a buffered one for requests that are not
// aligned to the direct-I/O granularity (and for everything when O_DIRECT is unavailable).
#pragma once

#include <cstdint>
#include <filesystem>

namespace v2p::vfilter {

class ImageFile {
 public:
  // Throws v2p::Error with an actionable sentence when the image cannot be opened.
  ImageFile(const std::filesystem::path& path, bool read_only, bool want_direct);
  ~ImageFile();
  ImageFile(const ImageFile&) = delete;
  ImageFile& operator=(const ImageFile&) = delete;

  [[nodiscard]] std::uint64_t size() const noexcept { return size_; }
  [[nodiscard]] bool direct() const noexcept { return direct_fd_ >= 0; }
  // Offset, length and memory alignment a request needs to take the O_DIRECT descriptor.
  [[nodiscard]] std::uint32_t direct_align() const noexcept { return align_; }
  // The descriptor to use for [offset, offset + length) with an aligned buffer.
  [[nodiscard]] int fd_for(std::uint64_t offset, std::uint64_t length) const noexcept {
    const bool aligned = offset % align_ == 0 && length % align_ == 0;
    return direct_fd_ >= 0 && aligned ? direct_fd_ : buffered_fd_;
  }
  [[nodiscard]] int buffered_fd() const noexcept { return buffered_fd_; }
  // True when the file system turns this file's direct writes into buffered ones flushed by the
  // submitting thread (btrfs with data checksums, measured on 6.18): the SQE's ioprio tag never
  // reaches those bios, only the thread's own I/O priority does (docs/design.md).
  [[nodiscard]] bool direct_writes_are_buffered() const noexcept { return writes_buffered_; }
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
  int direct_fd_ = -1;
  int buffered_fd_ = -1;
  std::uint64_t size_ = 0;
  std::uint32_t align_ = 512;
  bool writes_buffered_ = false;
};

}  // namespace v2p::vfilter
