// Checks a recovered map against ground truth: every mapped byte of the vdisk is compared with
// where the image really keeps it (image_layout: FIEMAP, btrfs chunk tree, qemu-img map).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "correlator/image_layout.hpp"
#include "v2p/map.hpp"

namespace v2p::correlator {

// Mapped bytes whose confidence lies in [min_confidence, next bucket's minimum).
struct ConfidenceBucket {
  float min_confidence = 0;
  std::uint64_t bytes_observed = 0;
  std::uint64_t bytes_right = 0;
  double expected_right = 0;  // sum of bytes x confidence: what the map claims

  [[nodiscard]] double accuracy() const noexcept {
    return bytes_observed == 0 ? 0.0 : double(bytes_right) / double(bytes_observed);
  }
  [[nodiscard]] double mean_confidence() const noexcept {
    return bytes_observed == 0 ? 0.0 : expected_right / double(bytes_observed);
  }
};

// Bucket lower bounds: certain (>= 0.99; exact joins and sole window candidates), then the
// window join's 1/n levels: 2 candidates, 3-4, 5 and more.
inline constexpr float kConfidenceBuckets[] = {0.99f, 0.5f, 0.25f, 0.0f};

struct VerifyReport {
  std::uint64_t bytes_observed = 0;   // bytes the map places
  std::uint64_t bytes_right = 0;      // ... where the image really has them
  std::uint64_t bytes_wrong = 0;      // ... elsewhere, or where the image has a hole
  std::uint64_t bytes_allocated = 0;  // bytes the image has allocated (ground truth)
  // Sum over mapped bytes of their confidence: the number of right bytes the map expects.
  double expected_right = 0;
  // By confidence, highest first (kConfidenceBuckets).
  std::vector<ConfidenceBucket> buckets;
  std::vector<std::string> mismatches;  // the first few, one sentence each

  [[nodiscard]] double accuracy() const noexcept {
    return bytes_observed == 0 ? 0.0 : double(bytes_right) / double(bytes_observed);
  }
  // Byte-weighted mean confidence: the accuracy the map claims for itself. When the confidence
  // is honest, accuracy() is close to it.
  [[nodiscard]] double mean_confidence() const noexcept {
    return bytes_observed == 0 ? 0.0 : expected_right / double(bytes_observed);
  }
  [[nodiscard]] double coverage() const noexcept {
    return bytes_allocated == 0 ? 0.0 : double(bytes_observed) / double(bytes_allocated);
  }
};

inline constexpr std::size_t kMaxMismatches = 8;

// Compares the map of one vdisk with a layout (pure; what verify_against_fiemap uses).
VerifyReport verify_against_layout(const V2PMap& map, VdiskKey vdisk,
                                   const std::vector<LayoutExtent>& layout, DeviceId fs_device);

// Compares the map of one vdisk with the real layout of `image` on the device `fs_device`
// (the device of the file system holding it). Throws v2p::Error when the layout is unreadable.
VerifyReport verify_against_fiemap(const V2PMap& map, VdiskKey vdisk,
                                   const std::filesystem::path& image, DeviceId fs_device);

// The layout as map extents (confidence 1, generation 1): a map built from ground truth.
std::vector<MappedExtent> layout_extents(const std::vector<LayoutExtent>& layout, DeviceId device);

}  // namespace v2p::correlator
