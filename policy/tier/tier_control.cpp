#include "policy/tier/tier_control.hpp"

namespace v2p::tier {

void TierSet::add(std::shared_ptr<TierStage> stage) {
  std::lock_guard l(mu_);
  stages_.push_back(std::move(stage));
}

std::shared_ptr<TierStage> TierSet::find(VdiskKey vdisk) const {
  std::lock_guard l(mu_);
  for (const auto& s : stages_) {
    if (s->key() == vdisk) return s;
  }
  return nullptr;
}

std::vector<TierVdiskStatus> TierSet::status() const {
  std::lock_guard l(mu_);
  std::vector<TierVdiskStatus> out;
  for (const auto& s : stages_) out.push_back(s->status());
  return out;
}

Tier TierSet::placement(ExtentRef extent) const {
  const auto s = find(extent.vdisk);
  return s ? s->placement(ExtentIndex(extent.index)).tier : Tier::kSlow;
}

std::vector<std::uint64_t> TierSet::fast_extents(VdiskKey vdisk) const {
  std::vector<std::uint64_t> out;
  if (const auto s = find(vdisk)) {
    for (const auto e : s->fast_extents()) out.push_back(e.value());
  }
  return out;
}

TierRequestResult TierSet::request_promote(ExtentRef extent) {
  const auto s = find(extent.vdisk);
  return s ? s->request(ExtentIndex(extent.index), Tier::kFast) : TierRequestResult::kUnknown;
}

TierRequestResult TierSet::request_demote(ExtentRef extent) {
  const auto s = find(extent.vdisk);
  return s ? s->request(ExtentIndex(extent.index), Tier::kSlow) : TierRequestResult::kUnknown;
}

void TierSet::set_class_of_service(VmId vm, TierClassOfService cos) {
  std::lock_guard l(mu_);
  for (const auto& s : stages_) {
    if (s->key().vm == vm) s->set_class_of_service(cos);
  }
}

}  // namespace v2p::tier
