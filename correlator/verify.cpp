#include "correlator/verify.hpp"

#include <fmt/core.h>

#include <algorithm>

namespace v2p::correlator {
namespace {

void note(VerifyReport& r, std::string s) {
  if (r.mismatches.size() < kMaxMismatches) r.mismatches.push_back(std::move(s));
}

std::string dev_name(DeviceId d) {
  return fmt::format("{}:{}", d.major(), d.minor());
}

}  // namespace

VerifyReport verify_against_layout(const V2PMap& map, VdiskKey vdisk,
                                   const std::vector<LayoutExtent>& layout, DeviceId fs_device) {
  VerifyReport r;
  for (const float min : kConfidenceBuckets) r.buckets.push_back({min, 0, 0, 0.0});
  for (const auto& l : layout) r.bytes_allocated += l.length;
  std::size_t li = 0;
  for (const auto& e : map.extents(vdisk)) {
    const std::uint64_t right_before = r.bytes_right;
    r.bytes_observed += e.length;
    const std::uint64_t v0 = e.voffset.value(), v1 = v0 + e.length;
    const std::uint64_t map_phys = e.sector.value() * kSectorSize;
    while (li < layout.size() && layout[li].logical + layout[li].length <= v0) ++li;
    std::uint64_t at = v0;
    for (std::size_t j = li; j < layout.size() && layout[j].logical < v1 && at < v1; ++j) {
      const auto& l = layout[j];
      const std::uint64_t a = std::max(at, l.logical), b = std::min(v1, l.logical + l.length);
      if (a >= b) continue;
      if (a > at) {
        r.bytes_wrong += a - at;
        note(r, fmt::format("vdisk {:#x}+{} is mapped but the image has a hole there", at, a - at));
      }
      const std::uint64_t want = l.device_offset + (a - l.logical);
      const std::uint64_t got = map_phys + (a - v0);
      if (e.device == fs_device && want == got) {
        r.bytes_right += b - a;
      } else {
        r.bytes_wrong += b - a;
        note(r, fmt::format("vdisk {:#x}+{}: map says {} sector {}, image is at {} sector {}", a,
                            b - a, dev_name(e.device), got / kSectorSize, dev_name(fs_device),
                            want / kSectorSize));
      }
      at = b;
    }
    if (at < v1) {
      r.bytes_wrong += v1 - at;
      note(r, fmt::format("vdisk {:#x}+{} is mapped but the image has a hole there", at, v1 - at));
    }
    const double expected = double(e.length) * double(e.confidence);
    r.expected_right += expected;
    for (auto& b : r.buckets) {
      if (e.confidence >= b.min_confidence) {
        b.bytes_observed += e.length;
        b.bytes_right += r.bytes_right - right_before;
        b.expected_right += expected;
        break;
      }
    }
  }
  return r;
}

VerifyReport verify_against_fiemap(const V2PMap& map, VdiskKey vdisk,
                                   const std::filesystem::path& image, DeviceId fs_device) {
  return verify_against_layout(map, vdisk, image_layout(image), fs_device);
}

std::vector<MappedExtent> layout_extents(const std::vector<LayoutExtent>& layout, DeviceId device) {
  std::vector<MappedExtent> out;
  for (const auto& l : layout) {
    out.push_back({VirtualOffset{l.logical}, l.length, device,
                   PhysicalSector{l.device_offset / kSectorSize}, 1, 0, 1.0f});
  }
  return out;
}

}  // namespace v2p::correlator
