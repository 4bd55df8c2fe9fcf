// Rebalancing after stores were added (a host joined): chunks move from stores holding more
// than the mean to the least loaded store that keeps the container's failure domains apart,
// one chunk at a time, each move logged (ChunkMoved) before the old copy is removed, so a
// crash mid-way leaves at worst an orphan for scrub, never a container without its chunk.
#include <fmt/core.h>

#include <algorithm>

#include "common/error.hpp"
#include "ec/pool.hpp"

namespace v2p::ec {

RebuildReport Pool::rebalance(const ProgressFn& progress) {
  RebuildReport rep;
  std::uint64_t planned = 0;
  {
    std::lock_guard lock(mu_);
    auto cands = online_candidates_locked({});
    if (cands.empty()) return rep;
    std::uint64_t total = 0;
    for (const auto& c : cands) total += store_load_[c.store];
    const std::uint64_t floor_mean = total / cands.size();
    for (const auto& c : cands) {
      const auto l = store_load_[c.store];
      if (l < floor_mean) planned += floor_mean - l;  // what the emptiest stores need
    }
  }
  rep.chunks_total = planned;
  std::uint64_t done = 0;
  for (;;) {
    ContainerSealed c;
    int idx = -1;
    std::uint32_t target = 0;
    {
      std::lock_guard lock(mu_);
      auto cands = online_candidates_locked({});
      std::map<std::uint32_t, std::uint64_t> load;
      for (const auto& cd : cands) load[cd.store] = store_load_[cd.store];
      // The fullest store gives up one chunk, to a store holding two or more fewer: done when
      // every store is within one chunk of every other (or no move keeps the domains apart).
      std::uint32_t source = 0;
      std::uint64_t most = 0;
      for (const auto& [s, l] : load) {
        if (l > most) source = s, most = l;
      }
      if (most == 0) break;
      for (const auto& [id, cont] : containers_) {
        auto it = std::find(cont.stores.begin(), cont.stores.end(), source);
        if (it == cont.stores.end()) continue;
        const int i = static_cast<int>(it - cont.stores.begin());
        std::vector<std::uint32_t> taken(cont.stores.begin(), cont.stores.end());
        std::vector<FailureDomain> domains;
        for (std::size_t j = 0; j < cont.stores.size(); ++j) {
          if (static_cast<int>(j) != i) domains.push_back(stores_.at(cont.stores[j]).domain);
        }
        std::uint32_t t = 0;
        try {
          t = place_one(cands, taken, domains, cfg_.allow_shared_domains);
        } catch (const Error&) {
          continue;
        }
        if (load[t] + 1 >= most) continue;  // no better than where it is
        c = cont;
        idx = i;
        target = t;
        break;
      }
    }
    if (idx < 0) break;  // nothing movable without breaking the domain rule
    const auto source_store = stores_.at(c.stores[static_cast<std::size_t>(idx)]).store;
    auto payload = source_store.read_chunk(expect(c, idx));
    if (!payload.ok()) {
      // A bad source chunk: rebuild it from the others instead of moving it.
      auto set = read_chunks(c, c.k + c.m);
      if (!set.good[static_cast<std::size_t>(idx)] && !reconstruct(c, set, {idx})) {
        ++rep.failed;
        rep.problems.push_back(
            fmt::format("container {} chunk {}: {}", c.id, idx, payload.error()));
        break;
      }
      payload = std::move(set.chunks[static_cast<std::size_t>(idx)]);
    }
    std::lock_guard lock(mu_);
    auto w = write_chunk_of(c, idx, stores_.at(target).store, payload.value());
    if (!w.ok()) {
      ++rep.failed;
      rep.problems.push_back(w.error());
      break;
    }
    const ChunkMoved mv{c.id, static_cast<std::uint8_t>(idx), target};
    log_->append(mv);
    apply(mv);
    source_store.remove_chunk(c.id, static_cast<std::uint8_t>(idx));
    ++rep.chunks_rebuilt;
    ++done;
    if (progress) progress(done, std::max(done, planned));
  }
  return rep;
}

}  // namespace v2p::ec
