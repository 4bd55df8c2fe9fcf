// Where a vdisk's bytes physically are: the cache keys entries by physical location, so reflinked
// clones of one template share them. OriginResolver is the interface the cache stage asks;
// FiemapResolver answers from the image file's FIEMAP layout (btrfs addresses translated to
// device offsets), keeps the extents it learnt and re-reads a range after the stage wrote it,
// because copy-on-write file systems put written data somewhere new.
//
// Threads: every member is thread-safe and may block (FIEMAP is a system call).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <vector>

#include "correlator/image_layout.hpp"
#include "policy/cache/cache_key.hpp"

namespace v2p::cache {

// A physically contiguous piece of the vdisk.
struct PhysicalRun {
  std::uint64_t offset = 0;  // in the vdisk
  std::uint64_t length = 0;
  CacheKey start;  // where its first byte is
};

class OriginResolver {
 public:
  virtual ~OriginResolver() = default;
  // Where [offset, offset + length) starts when the whole range is one physically contiguous run
  // of written data; nullopt for holes, unwritten (preallocated) ranges, ranges split over
  // several extents and ranges whose place is not known yet (delayed allocation).
  virtual std::optional<CacheKey> locate(std::uint64_t offset, std::uint64_t length) = 0;
  // The physical runs of the range as last learnt (no system call when already known).
  virtual std::vector<PhysicalRun> runs(std::uint64_t offset, std::uint64_t length) = 0;
  // Forgets what it knew of the range and learns it again (after a write, zeroing or trim).
  virtual void refresh(std::uint64_t offset, std::uint64_t length) = 0;
};

class FiemapResolver final : public OriginResolver {
 public:
  // Throws v2p::Error when the image cannot be opened or its file system's device found.
  explicit FiemapResolver(const std::filesystem::path& image);
  ~FiemapResolver() override;

  std::optional<CacheKey> locate(std::uint64_t offset, std::uint64_t length) override;
  std::vector<PhysicalRun> runs(std::uint64_t offset, std::uint64_t length) override;
  void refresh(std::uint64_t offset, std::uint64_t length) override;

  [[nodiscard]] DeviceId device() const noexcept { return device_; }
  [[nodiscard]] std::uint64_t fiemap_calls() const noexcept { return fiemap_calls_; }

 private:
  struct Extent {
    std::uint64_t length = 0;
    std::uint64_t device_offset = 0;
    bool placed = false;  // false: unwritten or delayed allocation (no stable place)
  };
  // FIEMAP of [offset, offset + length), translated, clipped to the range.
  std::map<std::uint64_t, Extent> learn(std::uint64_t offset, std::uint64_t length);
  void replace(std::uint64_t offset, std::uint64_t length, std::map<std::uint64_t, Extent> fresh);
  void ensure_known();

  std::filesystem::path image_;
  int fd_ = -1;
  DeviceId device_;
  bool btrfs_ = false;
  std::vector<correlator::BtrfsChunk> chunks_;
  std::mutex learn_mu_;           // one FIEMAP + replace at a time, so learning stays ordered
  mutable std::shared_mutex mu_;  // extents_
  std::map<std::uint64_t, Extent> extents_;  // by vdisk offset; gaps are holes
  bool known_ = false;
  std::uint64_t fiemap_calls_ = 0;
};

}  // namespace v2p::cache
