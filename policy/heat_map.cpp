#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <unordered_map>

#include "v2p/heat.hpp"

namespace v2p {
namespace {

struct KeyHash {
  std::size_t operator()(const ExtentRef& e) const noexcept {
    std::uint64_t h = (std::uint64_t{e.vdisk.vm.value()} << 32) ^ e.vdisk.vdisk.value();
    h ^= e.index + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return static_cast<std::size_t>(h * 0xff51afd7ed558ccdULL);
  }
};

struct Entry {
  double value = 0;
  std::uint64_t at_ns = 0;
};

}  // namespace

struct HeatMap::Impl {
  std::uint64_t extent_bytes;
  unsigned extent_shift;
  std::uint64_t half_life_ns;
  std::unordered_map<ExtentRef, Entry, KeyHash> entries;

  [[nodiscard]] double decayed(const Entry& e, std::uint64_t now) const noexcept {
    if (now <= e.at_ns) return e.value;
    const double halves = static_cast<double>(now - e.at_ns) / static_cast<double>(half_life_ns);
    return e.value * std::exp2(-halves);
  }

  template <class Pred>
  std::vector<HotExtent> top(std::size_t n, std::uint64_t now, Pred keep) const {
    std::vector<HotExtent> all;
    for (const auto& [k, e] : entries) {
      if (keep(k)) all.push_back({k, decayed(e, now)});
    }
    const auto hotter = [](const HotExtent& a, const HotExtent& b) {
      return a.heat != b.heat ? a.heat > b.heat : a.extent < b.extent;
    };
    if (all.size() > n) {
      std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(),
                        hotter);
      all.resize(n);
    } else {
      std::sort(all.begin(), all.end(), hotter);
    }
    return all;
  }
};

HeatMap::HeatMap(std::uint64_t extent_bytes, std::uint64_t half_life_ns) {
  if (extent_bytes == 0 || (extent_bytes & (extent_bytes - 1)) != 0) {
    throw std::invalid_argument("heat extent size must be a power of two");
  }
  if (half_life_ns == 0) throw std::invalid_argument("heat half-life must be positive");
  impl_ = std::make_unique<Impl>(
      Impl{extent_bytes, static_cast<unsigned>(std::countr_zero(extent_bytes)), half_life_ns, {}});
}

HeatMap::~HeatMap() = default;
HeatMap::HeatMap(HeatMap&&) noexcept = default;
HeatMap& HeatMap::operator=(HeatMap&&) noexcept = default;

std::uint64_t HeatMap::extent_bytes() const noexcept {
  return impl_->extent_bytes;
}
std::uint64_t HeatMap::half_life_ns() const noexcept {
  return impl_->half_life_ns;
}

void HeatMap::add(VdiskKey vdisk, VirtualOffset offset, std::uint64_t length, std::uint64_t now_ns,
                  double weight) {
  const std::uint64_t first = offset.value() >> impl_->extent_shift;
  const std::uint64_t last =
      (offset.value() + std::max<std::uint64_t>(length, 1) - 1) >> impl_->extent_shift;
  for (std::uint64_t i = first; i <= last; ++i) {
    Entry& e = impl_->entries[ExtentRef{vdisk, i}];
    e.value = impl_->decayed(e, now_ns) + weight;
    e.at_ns = std::max(e.at_ns, now_ns);
  }
}

double HeatMap::heat(ExtentRef extent, std::uint64_t now_ns) const noexcept {
  const auto it = impl_->entries.find(extent);
  return it == impl_->entries.end() ? 0.0 : impl_->decayed(it->second, now_ns);
}

double HeatMap::vdisk_heat(VdiskKey vdisk, std::uint64_t now_ns) const noexcept {
  double sum = 0;
  for (const auto& [k, e] : impl_->entries) {
    if (k.vdisk == vdisk) sum += impl_->decayed(e, now_ns);
  }
  return sum;
}

std::vector<HotExtent> HeatMap::hottest(std::size_t n, std::uint64_t now_ns) const {
  return impl_->top(n, now_ns, [](const ExtentRef&) { return true; });
}

std::vector<HotExtent> HeatMap::hottest(VdiskKey vdisk, std::size_t n, std::uint64_t now_ns) const {
  return impl_->top(n, now_ns, [vdisk](const ExtentRef& k) { return k.vdisk == vdisk; });
}

std::size_t HeatMap::prune(std::uint64_t now_ns, double threshold) {
  return std::erase_if(impl_->entries, [&](const auto& kv) {
    return impl_->decayed(kv.second, now_ns) < threshold;
  });
}

std::size_t HeatMap::tracked() const noexcept {
  return impl_->entries.size();
}

}  // namespace v2p
