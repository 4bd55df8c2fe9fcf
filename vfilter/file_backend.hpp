// The image file as a BlockBackend: the bottom of a backend stack (a cache or a tier stage holds
// one as its origin). Reads and writes go through the image's O_DIRECT descriptor when aligned,
// on the calling worker thread, so they carry the thread's tag like any io_uring request would.
#pragma once

#include <filesystem>
#include <memory>

#include "vfilter/block_backend.hpp"
#include "vfilter/image_file.hpp"

namespace v2p::vfilter {

class FileBackend final : public BlockBackend {
 public:
  // Throws v2p::Error with an actionable sentence when the image cannot be opened.
  FileBackend(const std::filesystem::path& image, bool read_only, bool want_direct);

  [[nodiscard]] std::uint64_t size() const override { return image_.size(); }
  [[nodiscard]] bool read_only() const override { return read_only_; }
  [[nodiscard]] std::string describe() const override { return image_.path().string(); }
  [[nodiscard]] const ImageFile& image() const noexcept { return image_; }

  int read(const IoTarget& who, std::span<std::byte> out, std::uint64_t offset) override;
  int write(const IoTarget& who, std::span<const std::byte> data, std::uint64_t offset,
            Fua fua) override;
  int write_zeroes(const IoTarget& who, std::uint64_t offset, std::uint64_t length,
                   MayPunch may_punch, Fua fua) override;
  int trim(const IoTarget& who, std::uint64_t offset, std::uint64_t length) override;
  int flush(const IoTarget& who) override;

 private:
  ImageFile image_;
  bool read_only_;
};

}  // namespace v2p::vfilter
