// TierControl over the TierStages of one `v2p serve`: what the policy host hands a policy as
// PolicyContext::tier(). Stages are found by the vdisk key they learnt from their first request.
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include "policy/tier/tier_stage.hpp"
#include "v2p/tier.hpp"

namespace v2p::tier {

class TierSet final : public TierControl {
 public:
  void add(std::shared_ptr<TierStage> stage);

  [[nodiscard]] std::vector<TierVdiskStatus> status() const override;
  [[nodiscard]] Tier placement(ExtentRef extent) const override;
  [[nodiscard]] std::vector<std::uint64_t> fast_extents(VdiskKey vdisk) const override;
  TierRequestResult request_promote(ExtentRef extent) override;
  TierRequestResult request_demote(ExtentRef extent) override;
  void set_class_of_service(VmId vm, TierClassOfService cos) override;

 private:
  [[nodiscard]] std::shared_ptr<TierStage> find(VdiskKey vdisk) const;
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<TierStage>> stages_;
};

}  // namespace v2p::tier
