// Which store gets which chunk of a container. Rule: no two chunks of one container on the same
// store, and none on the same failure domain unless the operator allowed shared domains. Among
// the stores that qualify, the least loaded go first, so added stores fill up and the layout
// follows the store set as it changes.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "ec/failure_domain.hpp"

namespace v2p::ec {

struct Candidate {
  std::uint32_t store = 0;
  FailureDomain domain;
  std::uint64_t load = 0;  // chunks it already holds
};

// n distinct stores, chunk i on result[i]. Throws v2p::Error, naming the domains found, when the
// candidates cannot satisfy the rule.
std::vector<std::uint32_t> place_chunks(std::vector<Candidate> candidates, int n,
                                        bool allow_shared_domains);

// One more store for a container that already uses `taken` (store ids) on `taken_domains`.
std::uint32_t place_one(std::vector<Candidate> candidates, std::span<const std::uint32_t> taken,
                        std::span<const FailureDomain> taken_domains, bool allow_shared_domains);

}  // namespace v2p::ec
