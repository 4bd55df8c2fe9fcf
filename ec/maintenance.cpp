// Scrub, rebuild and evacuation: the background work that keeps every container at k + m good
// chunks. Each works one container at a time from a snapshot of the metadata, so foreground
// reads and writes interleave with it.
#include <fmt/core.h>

#include <algorithm>

#include "common/crc32c.hpp"
#include "common/error.hpp"
#include "ec/pool.hpp"

namespace v2p::ec {
namespace {

std::vector<int> bad_slots(const std::vector<bool>& good) {
  std::vector<int> out;
  for (std::size_t i = 0; i < good.size(); ++i) {
    if (!good[i]) out.push_back(static_cast<int>(i));
  }
  return out;
}

}  // namespace

ScrubReport Pool::scrub() {
  ScrubReport rep;
  std::vector<std::uint64_t> ids;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, c] : containers_) ids.push_back(id);
  }
  for (auto id : ids) {
    ContainerSealed c;
    {
      std::lock_guard lock(mu_);
      c = containers_.at(id);
    }
    ++rep.containers;
    const int n = c.k + c.m;
    auto set = read_chunks(c, n);  // all of them: a scrub verifies every chunk
    rep.chunks_checked += static_cast<std::uint64_t>(n);
    auto bad = bad_slots(set.good);
    if (bad.empty()) continue;
    rep.chunks_bad += bad.size();
    for (int i : bad) {
      rep.problems.push_back(fmt::format("container {} chunk {}: {}", c.id, i,
                                         set.errors[static_cast<std::size_t>(i)]));
    }
    if (!reconstruct(c, set, bad)) {
      ++rep.unrepairable;
      rep.problems.push_back(
          fmt::format("container {}: only {} good chunks, {} needed", c.id, set.good_count, c.k));
      continue;
    }
    for (int i : bad) {
      Store store(0, "");
      {
        std::lock_guard lock(mu_);
        store = stores_.at(c.stores[static_cast<std::size_t>(i)]).store;
      }
      if (store.probe(pool_id_) != Store::State::kOnline) {
        ++rep.chunks_offline;
        continue;
      }
      const auto& payload = set.chunks[static_cast<std::size_t>(i)];
      auto w = write_chunk_of(c, i, store, payload);
      if (w.ok()) {
        ++rep.chunks_repaired;
      } else {
        rep.problems.push_back(w.error());
      }
    }
  }
  // Chunk files no container refers to: left by writes that crashed before their metadata
  // record, or by evacuations. Under the lock, so no container is being sealed meanwhile.
  std::lock_guard lock(mu_);
  for (const auto& [sid, info] : stores_) {
    if (!info.configured || info.store.probe(pool_id_) != Store::State::kOnline) continue;
    for (const auto& f : info.store.list_chunks()) {
      const auto it = containers_.find(f.container_id);
      const bool referenced = it != containers_.end() && f.index < it->second.stores.size() &&
                              it->second.stores[f.index] == sid;
      if (!referenced) {
        std::error_code ec;
        if (std::filesystem::remove(f.path, ec)) ++rep.orphans_removed;
      }
    }
    for (const auto& t : info.store.list_temporaries()) {
      std::error_code ec;
      if (std::filesystem::remove(t, ec)) ++rep.orphans_removed;
    }
  }
  return rep;
}

RebuildReport Pool::rebuild(std::uint32_t store_id, const ProgressFn& progress) {
  {
    std::lock_guard lock(rebuild_mu_);
    if (rebuild_progress_.running) throw Error("a rebuild is already running");
    rebuild_progress_ = {true, store_id, 0, 0, {}};
  }
  try {
    auto rep = rebuild_impl(store_id, progress);
    std::lock_guard lock(rebuild_mu_);
    rebuild_progress_.running = false;
    return rep;
  } catch (const std::exception& e) {
    std::lock_guard lock(rebuild_mu_);
    rebuild_progress_.running = false;
    rebuild_progress_.error = e.what();
    throw;
  }
}

Result<bool> Pool::write_chunk_of(const ContainerSealed& c, int index, const Store& store,
                                  std::span<const std::uint8_t> payload) const {
  const ChunkHeader h{c.k,
                      c.m,
                      static_cast<std::uint8_t>(index),
                      pool_id_,
                      c.id,
                      c.nonce,
                      c.chunk_len,
                      crc32c(payload),
                      c.created_ns};
  return store.write_chunk(h, payload);
}

RebuildReport Pool::rebuild_impl(std::uint32_t store_id, const ProgressFn& progress) {
  Store store(0, "");
  {
    std::lock_guard lock(mu_);
    auto it = stores_.find(store_id);
    if (it == stores_.end() || !it->second.configured) {
      throw Error("store " + std::to_string(store_id) + " is not in the configuration");
    }
    auto& info = it->second;
    const auto state = info.store.probe(pool_id_);
    if (state == Store::State::kMissing || state == Store::State::kForeign) {
      throw Error("store " + std::to_string(store_id) + " at " + info.store.root().string() + ": " +
                  to_string(state));
    }
    if (state == Store::State::kNoIdentity) {
      // The replacement must not share a disk with another store, or the rule breaks quietly.
      const auto domain = failure_domain_of(info.store.root());
      if (!cfg_.allow_shared_domains) {
        for (const auto& [oid, other] : stores_) {
          if (oid != store_id && other.configured && other.domain == domain &&
              other.store.probe(pool_id_) == Store::State::kOnline) {
            throw Error("replacement for store " + std::to_string(store_id) + " is on " +
                        domain.label() + ", which store " + std::to_string(oid) +
                        " already uses; pick another disk or set allow_shared_domains");
          }
        }
      }
      info.store.adopt(pool_id_);
      info.domain = domain;
      log_->append(StoreAdopted{store_id, domain.label()});
    }
    store = info.store;
  }
  std::vector<std::pair<std::uint64_t, int>> todo;  // (container, chunk index)
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, c] : containers_) {
      for (std::size_t i = 0; i < c.stores.size(); ++i) {
        if (c.stores[i] == store_id) todo.emplace_back(id, static_cast<int>(i));
      }
    }
  }
  RebuildReport rep;
  rep.chunks_total = todo.size();
  {
    std::lock_guard lock(rebuild_mu_);
    rebuild_progress_.total = todo.size();
  }
  std::uint64_t done = 0;
  for (const auto& [id, idx] : todo) {
    ContainerSealed c;
    {
      std::lock_guard lock(mu_);
      c = containers_.at(id);
    }
    const bool intact = store.has_chunk(expect(c, idx)) && store.read_chunk(expect(c, idx)).ok();
    if (intact) {
      ++rep.chunks_intact;
    } else {
      auto set = read_chunks(c, c.k + c.m);
      const std::vector<int> target{idx};
      if (set.good[static_cast<std::size_t>(idx)]) {  // raced with a repair: rewrite anyway
        set.good[static_cast<std::size_t>(idx)] = false;
        --set.good_count;
      }
      if (!reconstruct(c, set, target)) {
        ++rep.failed;
        rep.problems.push_back(fmt::format("container {} chunk {}: only {} good chunks, {} needed",
                                           id, idx, set.good_count, c.k));
      } else {
        const auto& payload = set.chunks[static_cast<std::size_t>(idx)];
        auto w = write_chunk_of(c, idx, store, payload);
        if (w.ok()) {
          ++rep.chunks_rebuilt;
        } else {
          ++rep.failed;
          rep.problems.push_back(w.error());
        }
      }
    }
    ++done;
    {
      std::lock_guard lock(rebuild_mu_);
      rebuild_progress_.done = done;
    }
    if (progress) progress(done, todo.size());
  }
  return rep;
}

void Pool::start_rebuild(std::uint32_t store) {
  if (rebuild_thread_.joinable()) rebuild_thread_.join();
  {
    std::lock_guard lock(rebuild_mu_);
    if (rebuild_progress_.running) throw Error("a rebuild is already running");
  }
  rebuild_thread_ = std::thread([this, store] {
    try {
      (void)rebuild(store);
    } catch (const std::exception&) {
      // rebuild() recorded the error in the progress; status() reports it.
    }
  });
}

void Pool::wait_rebuild() {
  if (rebuild_thread_.joinable()) rebuild_thread_.join();
}

RebuildReport Pool::evacuate(std::uint32_t store_id, const ProgressFn& progress) {
  std::vector<std::pair<std::uint64_t, int>> todo;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, c] : containers_) {
      for (std::size_t i = 0; i < c.stores.size(); ++i) {
        if (c.stores[i] == store_id) todo.emplace_back(id, static_cast<int>(i));
      }
    }
  }
  RebuildReport rep;
  rep.chunks_total = todo.size();
  std::uint64_t done = 0;
  for (const auto& [id, idx] : todo) {
    ContainerSealed c;
    {
      std::lock_guard lock(mu_);
      c = containers_.at(id);
    }
    auto set = read_chunks(c, c.k + c.m);
    const std::vector<int> target{idx};
    if (!set.good[static_cast<std::size_t>(idx)] && !reconstruct(c, set, target)) {
      ++rep.failed;
      rep.problems.push_back(fmt::format("container {} chunk {}: only {} good chunks, {} needed",
                                         id, idx, set.good_count, c.k));
      continue;
    }
    std::lock_guard lock(mu_);
    std::vector<std::uint32_t> taken(c.stores.begin(), c.stores.end());
    std::vector<FailureDomain> domains;
    for (std::size_t i = 0; i < c.stores.size(); ++i) {
      if (static_cast<int>(i) != idx) domains.push_back(stores_.at(c.stores[i]).domain);
    }
    std::uint32_t target_store = 0;
    try {
      target_store =
          place_one(online_candidates_locked({}), taken, domains, cfg_.allow_shared_domains);
    } catch (const Error& e) {
      ++rep.failed;
      rep.problems.push_back(fmt::format("container {} chunk {}: {}", id, idx, e.what()));
      continue;
    }
    const auto& payload = set.chunks[static_cast<std::size_t>(idx)];
    auto w = write_chunk_of(c, idx, stores_.at(target_store).store, payload);
    if (!w.ok()) {
      ++rep.failed;
      rep.problems.push_back(w.error());
      continue;
    }
    const ChunkMoved mv{id, static_cast<std::uint8_t>(idx), target_store};
    log_->append(mv);
    apply(mv);
    stores_.at(store_id).store.remove_chunk(id, static_cast<std::uint8_t>(idx));
    ++rep.chunks_rebuilt;
    ++done;
    if (progress) progress(done, todo.size());
  }
  return rep;
}

}  // namespace v2p::ec
