// The image file as a BlockBackend: the bottom of every image vdisk's stack. Two paths:
// submit() is the io_uring image path (image_ring.cpp): host I/O on the connection's ring, each
// read and write carrying the request's slot in its SQE's ioprio; the synchronous calls serve
// blocking stages above (a cache or a tier holds one as its origin) on the calling worker
// thread, which runs under the request's tag. Reads and writes use the image's O_DIRECT
// descriptor when aligned.
#pragma once

#include <filesystem>
#include <memory>

#include "vfilter/block_backend.hpp"
#include "vfilter/image_file.hpp"

namespace v2p::vfilter {

// 1 MiB of zeros aligned for O_DIRECT, shared and never written (WRITE_ZEROES without fallocate).
inline constexpr std::uint32_t kZeroChunk = 1U << 20;
const std::byte* zero_chunk() noexcept;

class FileBackend final : public BlockBackend {
 public:
  // Throws v2p::Error with an actionable sentence when the image cannot be opened.
  FileBackend(const std::filesystem::path& image, bool read_only, bool want_direct);

  [[nodiscard]] std::uint64_t size() const override { return image_.size(); }
  [[nodiscard]] bool read_only() const override { return read_only_; }
  [[nodiscard]] std::string describe() const override { return image_.path().string(); }
  [[nodiscard]] const ImageFile& image() const noexcept { return image_; }
  [[nodiscard]] std::uint32_t min_block() const override {
    return image_.direct() ? image_.direct_align() : 1;
  }
  [[nodiscard]] std::uint32_t buffer_align() const override;
  [[nodiscard]] bool asynchronous() const override { return true; }

  void submit(StageIo& io) noexcept override;

  int read(const IoTarget& who, std::span<std::byte> out, std::uint64_t offset) override;
  int write(const IoTarget& who, std::span<const std::byte> data, std::uint64_t offset,
            Fua fua) override;
  int write_zeroes(const IoTarget& who, std::uint64_t offset, std::uint64_t length,
                   MayPunch may_punch, Fua fua) override;
  int trim(const IoTarget& who, std::uint64_t offset, std::uint64_t length) override;
  int flush(const IoTarget& who) override;

 private:
  // The io_uring state machine (image_ring.cpp): one host I/O of `io` at a time.
  void ring_step(StageIo& io) noexcept;
  void ring_done(StageIo& io, int res) noexcept;
  static void on_cqe(void* self, StageIo& io, int res) noexcept;

  ImageFile image_;
  bool read_only_;
};

}  // namespace v2p::vfilter
