// The narrow control a policy gets over the tiering mechanism (PolicyContext::tier(), null when
// `v2p serve` runs without --tier-fast). The policy decides which extents belong on the fast
// tier; the tier stage moves the data, crash-safely, in a background thread at a rate limit.
// docs/tier.md describes the mechanism and the built-in policy.
//
// Threads: every call is non-blocking (it takes a short internal lock, never waits for I/O) and
// may be called from the policy thread. Requests are queued; migrations complete later.
// Public SDK header: self-contained.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "v2p/heat.hpp"
#include "v2p/types.hpp"

namespace v2p {

enum class Tier : std::uint8_t { kSlow = 0, kFast = 1 };

// How much a VM is favoured: its accesses count `heat_weight` times (priority scales heat), and
// it may hold at most `fast_share` of its vdisk's fast tier (1.0 = all of it).
struct TierClassOfService {
  double heat_weight = 1.0;
  double fast_share = 1.0;
};

// One vdisk under tiering, as the mechanism sees it now.
struct TierVdiskStatus {
  VdiskKey vdisk;
  std::string vm_name;
  std::string vdisk_name;
  std::uint64_t extent_bytes = 0;
  std::uint64_t extents = 0;          // the vdisk's size in extents
  std::uint64_t fast_capacity = 0;    // extents the fast tier file holds
  std::uint64_t fast_extents = 0;     // extents placed on the fast tier now
  std::uint64_t hot_extents = 0;      // the hot set: extents at or above the hot threshold
  std::uint64_t hot_on_fast = 0;      // of those, on the fast tier
  std::uint64_t queued = 0;           // migrations waiting
  std::uint64_t migrating = 0;        // 0 or 1: the one being copied
  std::uint64_t promoted = 0;         // committed promotions since open
  std::uint64_t demoted = 0;          // committed demotions since open
  std::uint64_t clean_demotions = 0;  // of those, not written since promotion: no copy needed
  std::uint64_t aborted = 0;          // copies abandoned because a write hit the extent
  std::uint64_t failed = 0;           // moves that hit an I/O error (the old copy stays)
  std::uint64_t bytes_migrated = 0;   // copied and committed since open
  std::uint64_t current_done = 0;     // bytes of the current copy done (progress)
  TierClassOfService cos;

  [[nodiscard]] double hot_fraction_on_fast() const noexcept {
    return hot_extents == 0 ? 1.0
                            : static_cast<double>(hot_on_fast) / static_cast<double>(hot_extents);
  }
  [[nodiscard]] std::uint64_t bytes_fast() const noexcept { return fast_extents * extent_bytes; }
  [[nodiscard]] std::uint64_t bytes_slow() const noexcept {
    return (extents - fast_extents) * extent_bytes;
  }
};

// Why a request was not queued.
enum class TierRequestResult : std::uint8_t {
  kQueued,
  kAlreadyThere,  // the extent already lives on that tier (or is queued to move there)
  kNoSpace,       // promotion: the fast tier (or the VM's share of it) is full
  kUnknown,       // no tiered vdisk with that key, or the index is past its end
};

class TierControl {
 public:
  virtual ~TierControl() = default;
  // Every tiered vdisk.
  [[nodiscard]] virtual std::vector<TierVdiskStatus> status() const = 0;
  // Where an extent lives now (kSlow for unknown ones).
  [[nodiscard]] virtual Tier placement(ExtentRef extent) const = 0;
  // The extents of a vdisk on the fast tier now, ordered.
  [[nodiscard]] virtual std::vector<std::uint64_t> fast_extents(VdiskKey vdisk) const = 0;
  // Queue a move. The mechanism copies, checksums, journals and then switches; a write that hits
  // the extent during the copy makes it retry.
  virtual TierRequestResult request_promote(ExtentRef extent) = 0;
  virtual TierRequestResult request_demote(ExtentRef extent) = 0;
  // Applies to every vdisk of the VM, from its next access on.
  virtual void set_class_of_service(VmId vm, TierClassOfService cos) = 0;
};

}  // namespace v2p
