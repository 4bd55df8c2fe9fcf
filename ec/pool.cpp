#include "ec/pool.hpp"

#include <algorithm>
#include <chrono>
#include <random>

#include "common/crc32c.hpp"
#include "common/error.hpp"

namespace v2p::ec {
namespace {

std::uint64_t random64() {
  static thread_local std::mt19937_64 gen{std::random_device{}()};
  return gen();
}

std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

// Payloads are padded to 64 bytes so every chunk start suits ISA-L's widest vector loads.
constexpr std::uint32_t kChunkAlign = 64;

}  // namespace

Pool::Pool(PoolConfig config) : cfg_(std::move(config)) {
  cfg_.validate();
  log_ = std::make_unique<MetadataLog>(cfg_.metadata_dir, random64() | 1);
  pool_id_ = log_->pool_id();
  dropped_tail_ = log_->dropped_tail();
  for (const auto& s : cfg_.stores) {
    stores_.emplace(s.id, StoreInfo{Store(s.id, s.path, s.backend), {}, true});
  }
  for (const auto& r : log_->replayed()) apply(r);
  log_->replayed().clear();
  for (auto& [id, info] : stores_) {
    if (!info.configured) continue;
    auto state = info.store.probe(pool_id_);
    if (state == Store::State::kNoIdentity && !info.adopted) {
      // Never part of the pool: nothing on it to lose, so it joins now (new pool, added store).
      info.store.adopt(pool_id_);
      info.domain = info.store.failure_domain();
      log_->append(StoreAdopted{id, info.domain.label()});
      info.adopted = true;
      state = Store::State::kOnline;
    }
    if (state == Store::State::kForeign) {
      throw Error("store " + std::to_string(id) + " at " + info.store.root().string() +
                  " belongs to another pool or has another id");
    }
    if (state == Store::State::kOnline) info.domain = info.store.failure_domain();
  }
  workers_ = std::make_unique<IoWorkers>(cfg_.io_threads);
}

Pool::~Pool() {
  if (rebuild_thread_.joinable()) rebuild_thread_.join();
}

void Pool::apply(const LogRecord& rec) {
  if (const auto* s = std::get_if<StoreAdopted>(&rec)) {
    auto it = stores_.find(s->store);
    if (it == stores_.end()) {
      // Adopted once, no longer configured: kept so its chunks are known to be elsewhere-less.
      it = stores_.emplace(s->store, StoreInfo{Store(s->store, ""), {}, false}).first;
    }
    it->second.adopted = true;
    it->second.domain.name = s->domain;  // until probed online; labels identify it for status
    // Offline domains keep distinct identities by name: hash it into the minor number.
    it->second.domain.major = 0xffffffffU;
    it->second.domain.minor = static_cast<unsigned>(std::hash<std::string>{}(s->domain));
  } else if (const auto* c = std::get_if<ContainerSealed>(&rec)) {
    for (auto st : c->stores) {
      ++store_load_[st];
      if (!stores_.count(st)) stores_.emplace(st, StoreInfo{Store(st, ""), {}, false, true});
    }
    for (const auto& b : c->blocks) index_.insert({VmId{c->vm}, VdiskId{c->vdisk}}, c->id, b);
    next_container_ = std::max(next_container_, c->id + 1);
    containers_[c->id] = *c;
  } else if (const auto* mv = std::get_if<ChunkMoved>(&rec)) {
    auto it = containers_.find(mv->container);
    if (it == containers_.end() || mv->index >= it->second.stores.size()) return;
    --store_load_[it->second.stores[mv->index]];
    ++store_load_[mv->store];
    it->second.stores[mv->index] = mv->store;
  }
}

const Coder& Pool::coder(int k, int m) {
  std::lock_guard lock(coder_mu_);
  auto& c = coders_[{k, m}];
  if (!c) c = std::make_unique<Coder>(k, m);
  return *c;
}

ChunkExpect Pool::expect(const ContainerSealed& c, int index) const {
  return {pool_id_, c.id, c.nonce, static_cast<std::uint8_t>(index), c.k, c.m, c.chunk_len};
}

std::vector<Candidate> Pool::online_candidates_locked(
    std::span<const std::uint32_t> exclude) const {
  std::vector<Candidate> out;
  for (const auto& [id, info] : stores_) {
    if (!info.configured || std::find(exclude.begin(), exclude.end(), id) != exclude.end()) {
      continue;
    }
    if (info.store.probe(pool_id_) != Store::State::kOnline) continue;
    const auto load = store_load_.find(id);
    out.push_back(
        {id, info.domain,
         (load == store_load_.end() ? 0 : load->second) + info.store.placement_penalty()});
  }
  return out;
}

void Pool::write(VdiskKey key, VirtualOffset offset, std::span<const std::uint8_t> bytes) {
  std::lock_guard lock(mu_);
  std::uint64_t voff = offset.value();
  std::size_t pos = 0;
  while (pos < bytes.size()) {
    // Blocks never cross a block_bytes boundary of the vdisk, so rewrites line up with them.
    const std::uint64_t boundary = (voff / cfg_.block_bytes + 1) * cfg_.block_bytes;
    const auto len =
        static_cast<std::uint32_t>(std::min<std::uint64_t>(boundary - voff, bytes.size() - pos));
    auto& oc = open_[key];
    if (!oc.blocks.empty() && oc.data.size() + len > cfg_.container_bytes) seal_locked(key);
    auto& cur = open_[key];
    const auto block = bytes.subspan(pos, len);
    cur.blocks.push_back({voff, len, static_cast<std::uint32_t>(cur.data.size()), crc32c(block)});
    cur.data.insert(cur.data.end(), block.begin(), block.end());
    if (cur.data.size() >= cfg_.container_bytes) seal_locked(key);
    voff += len;
    pos += len;
  }
}

void Pool::flush() {
  std::lock_guard lock(mu_);
  while (!open_.empty()) seal_locked(open_.begin()->first);
}

void Pool::seal_locked(VdiskKey key) {
  auto node = open_.extract(key);
  if (node.empty() || node.mapped().blocks.empty()) return;
  OpenContainer& oc = node.mapped();
  const Layout layout = cfg_.layout_for(key);
  const Coder& code = coder(layout.k, layout.m);
  const int k = layout.k, n = layout.k + layout.m;
  const auto data_len = static_cast<std::uint32_t>(oc.data.size());
  const std::uint32_t per = (data_len + k - 1) / k;
  const std::uint32_t chunk_len = (per + kChunkAlign - 1) / kChunkAlign * kChunkAlign;

  // One buffer: k data chunks (zero-padded) followed by m parity chunks.
  std::vector<std::uint8_t> buf(static_cast<std::size_t>(n) * chunk_len, 0);
  std::copy(oc.data.begin(), oc.data.end(), buf.begin());
  std::vector<const std::uint8_t*> dp;
  std::vector<std::uint8_t*> pp;
  for (int i = 0; i < k; ++i) dp.push_back(buf.data() + static_cast<std::size_t>(i) * chunk_len);
  for (int i = k; i < n; ++i) pp.push_back(buf.data() + static_cast<std::size_t>(i) * chunk_len);
  code.encode(dp, pp, chunk_len);

  ContainerSealed rec;
  rec.id = next_container_++;
  rec.nonce = random64();
  rec.vm = key.vm.value();
  rec.vdisk = key.vdisk.value();
  rec.k = static_cast<std::uint8_t>(layout.k);
  rec.m = static_cast<std::uint8_t>(layout.m);
  rec.data_len = data_len;
  rec.chunk_len = chunk_len;
  rec.created_ns = now_ns();
  rec.blocks = std::move(oc.blocks);

  // A store can fail between the probe and the write; then place again without it, once.
  std::vector<std::uint32_t> failed;
  std::vector<std::string> problems;
  for (int attempt = 0; attempt < 2; ++attempt) {
    try {
      if (cfg_.may_place && !cfg_.may_place()) {
        throw Error(
            "not placing new data: this host has lost its cluster lease (cut off from etcd), "
            "so its view of the hosts may be stale; the data stays buffered");
      }
      rec.stores = place_chunks(online_candidates_locked(failed), n, cfg_.allow_shared_domains);
    } catch (...) {
      oc.blocks = std::move(rec.blocks);
      open_.insert(std::move(node));
      throw;
    }
    std::vector<Result<bool>> results(static_cast<std::size_t>(n), Result<bool>(true));
    std::vector<std::function<void()>> tasks;
    for (int i = 0; i < n; ++i) {
      ChunkHeader h{rec.k,     rec.m,  static_cast<std::uint8_t>(i),
                    pool_id_,  rec.id, rec.nonce,
                    chunk_len, 0,      rec.created_ns};
      const auto payload = std::span<const std::uint8_t>(buf).subspan(
          static_cast<std::size_t>(i) * chunk_len, chunk_len);
      h.payload_crc = crc32c(payload);
      tasks.emplace_back([&results, i, h, payload, store = stores_.at(rec.stores[i]).store] {
        results[static_cast<std::size_t>(i)] = store.write_chunk(h, payload);
      });
    }
    workers_->run_all(std::move(tasks));
    problems.clear();
    for (int i = 0; i < n; ++i) {
      if (!results[static_cast<std::size_t>(i)].ok()) {
        failed.push_back(rec.stores[static_cast<std::size_t>(i)]);
        problems.push_back(results[static_cast<std::size_t>(i)].error());
      }
    }
    if (problems.empty()) break;
    for (int i = 0; i < n; ++i) {
      stores_.at(rec.stores[static_cast<std::size_t>(i)])
          .store.remove_chunk(rec.id, static_cast<std::uint8_t>(i));
    }
    if (attempt == 1) {
      oc.blocks = std::move(rec.blocks);
      open_.insert(std::move(node));
      std::string why;
      for (const auto& p : problems) why += "; " + p;
      throw Error("container write failed on every placement tried" + why);
    }
  }
  try {
    log_->append(rec);
  } catch (...) {
    oc.blocks = std::move(rec.blocks);
    open_.insert(std::move(node));
    throw;
  }
  for (const auto& b : rec.blocks) index_.insert(key, rec.id, b);
  for (auto s : rec.stores) ++store_load_[s];
  containers_[rec.id] = std::move(rec);
}

}  // namespace v2p::ec
