#include "ec/placement.hpp"

#include <algorithm>
#include <map>
#include <string>

#include "common/error.hpp"

namespace v2p::ec {
namespace {

void by_load(std::vector<Candidate>& c) {
  std::sort(c.begin(), c.end(), [](const Candidate& a, const Candidate& b) {
    return std::tie(a.load, a.store) < std::tie(b.load, b.store);
  });
}

std::string describe_domains(const std::vector<Candidate>& c) {
  std::map<FailureDomain, std::string> groups;
  for (const auto& x : c) {
    auto& s = groups[x.domain];
    s += (s.empty() ? "" : ",") + std::to_string(x.store);
  }
  std::string out;
  for (const auto& [d, stores] : groups) {
    out += (out.empty() ? "" : "; ") + d.label() + " [stores " + stores + "]";
  }
  return out.empty() ? "none" : out;
}

}  // namespace

std::vector<std::uint32_t> place_chunks(std::vector<Candidate> candidates, int n,
                                        bool allow_shared_domains) {
  by_load(candidates);
  if (static_cast<int>(candidates.size()) < n) {
    throw Error(std::to_string(n) + " chunks need " + std::to_string(n) + " online stores, only " +
                std::to_string(candidates.size()) + " are online: " + describe_domains(candidates));
  }
  std::vector<std::uint32_t> out;
  std::vector<bool> used(candidates.size(), false);
  std::map<FailureDomain, int> domain_use;
  // First pass: one chunk per domain, least loaded store of each domain first.
  for (std::size_t i = 0; i < candidates.size() && static_cast<int>(out.size()) < n; ++i) {
    if (domain_use[candidates[i].domain] > 0) continue;
    ++domain_use[candidates[i].domain];
    used[i] = true;
    out.push_back(candidates[i].store);
  }
  if (static_cast<int>(out.size()) < n && !allow_shared_domains) {
    throw Error(std::to_string(n) + " chunks need " + std::to_string(n) +
                " distinct failure domains, the online stores give " + std::to_string(out.size()) +
                ": " + describe_domains(candidates) +
                ". Add stores on other disks, lower k+m, or set allow_shared_domains");
  }
  // Shared domains allowed: spread over the least used domains.
  while (static_cast<int>(out.size()) < n) {
    std::size_t best = candidates.size();
    for (std::size_t i = 0; i < candidates.size(); ++i) {
      if (used[i]) continue;
      if (best == candidates.size() ||
          domain_use[candidates[i].domain] < domain_use[candidates[best].domain]) {
        best = i;
      }
    }
    used[best] = true;
    ++domain_use[candidates[best].domain];
    out.push_back(candidates[best].store);
  }
  return out;
}

std::uint32_t place_one(std::vector<Candidate> candidates, std::span<const std::uint32_t> taken,
                        std::span<const FailureDomain> taken_domains, bool allow_shared_domains) {
  by_load(candidates);
  const Candidate* fallback = nullptr;
  for (const auto& c : candidates) {
    if (std::find(taken.begin(), taken.end(), c.store) != taken.end()) continue;
    if (std::find(taken_domains.begin(), taken_domains.end(), c.domain) == taken_domains.end()) {
      return c.store;
    }
    if (!fallback) fallback = &c;
  }
  if (fallback && allow_shared_domains) return fallback->store;
  throw Error("no online store on a failure domain this container does not already use: " +
              describe_domains(candidates) +
              (allow_shared_domains ? "" : " (allow_shared_domains is off)"));
}

}  // namespace v2p::ec
