// Recently trimmed ranges. A trim joins the moment its record arrives (it has no bios), while an
// earlier write to the same range may still be waiting for late bios; when that write is placed
// afterwards, the parts of it the trim removed must stay removed. Requests to one range are
// ordered by the guest, so "earlier" is "bio issued before the trim was submitted".
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <vector>

#include "v2p/types.hpp"

namespace v2p::correlator {

class TrimLog {
 public:
  void add(VdiskKey key, std::uint64_t v0, std::uint64_t v1, std::uint64_t submit_ns,
           std::uint64_t complete_ns) {
    // Kept sorted by completion; records arrive in completion order, so this appends.
    auto it = trims_.end();
    while (it != trims_.begin() && std::prev(it)->complete_ns > complete_ns) --it;
    trims_.insert(it, {key, v0, v1, submit_ns, complete_ns});
  }

  // Calls f(a, b) for each part of [v0, v1) that no trim submitted after ts removed.
  template <class F>
  void surviving(VdiskKey key, std::uint64_t v0, std::uint64_t v1, std::uint64_t ts, F&& f) const {
    if (trims_.empty()) {
      f(v0, v1);
      return;
    }
    cut_.clear();
    // Only trims submitted after ts matter, and those completed after ts: walk back from the
    // newest and stop at the first that completed before the bio was issued.
    for (auto it = trims_.rbegin(); it != trims_.rend() && it->complete_ns > ts; ++it) {
      const Trim& t = *it;
      if (t.key == key && t.submit_ns > ts && t.v0 < v1 && v0 < t.v1) {
        cut_.push_back({std::max(t.v0, v0), std::min(t.v1, v1)});
      }
    }
    std::sort(cut_.begin(), cut_.end());
    std::uint64_t at = v0;
    for (const auto& [a, b] : cut_) {
      if (a > at) f(at, a);
      at = std::max(at, b);
    }
    if (at < v1) f(at, v1);
  }

  // Forgets trims no request still waiting could predate.
  void expire(std::uint64_t now_ns, std::uint64_t horizon_ns) {
    while (!trims_.empty() && trims_.front().complete_ns + horizon_ns <= now_ns) trims_.pop_front();
  }

 private:
  struct Trim {
    VdiskKey key;
    std::uint64_t v0, v1, submit_ns, complete_ns;
  };
  std::deque<Trim> trims_;
  mutable std::vector<std::pair<std::uint64_t, std::uint64_t>> cut_;
};

}  // namespace v2p::correlator
