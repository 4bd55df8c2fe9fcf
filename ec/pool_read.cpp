// The read path: healthy reads touch only the data chunks holding the wanted blocks; anything
// missing, corrupt or slower than hedge_delay sends the read to all k + m chunks, and the first
// k good ones to answer are decoded. Block CRCs are checked last, so a read never returns bytes
// other than those written.
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <optional>

#include "common/crc32c.hpp"
#include "ec/pool.hpp"

namespace v2p::ec {
namespace {

// Results of reads that may outlive the caller's wait (hedging leaves stragglers behind).
struct Gather {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::optional<Result<std::vector<std::uint8_t>>>> slots;
  std::vector<int> arrival;  // slot numbers in completion order
  int good = 0;

  explicit Gather(std::size_t n) : slots(n) {}
  void put(int i, Result<std::vector<std::uint8_t>> r) {
    std::lock_guard lock(mu);
    if (r.ok()) ++good;
    slots[static_cast<std::size_t>(i)].emplace(std::move(r));
    arrival.push_back(i);
    cv.notify_all();
  }
};

std::string container_label(const ContainerSealed& c) {
  return fmt::format("container {} (vm {} vdisk {}, {}+{})", c.id, c.vm, c.vdisk, c.k, c.m);
}

using Blocks = std::map<std::uint32_t, std::vector<std::uint8_t>>;

// Cuts the wanted blocks out of per-chunk buffers, where chunk ch's buffer starts at chunk
// offset base(ch), and checks each block's CRC. nullopt when one fails; `bad` then marks the
// chunks that block came from.
template <class Source, class Base>
std::optional<Blocks> assemble(const std::vector<BlockRef>& blocks, std::uint32_t cl, Source source,
                               Base base, std::vector<bool>& bad) {
  Blocks out;
  bool ok = true;
  for (const auto& b : blocks) {
    std::vector<std::uint8_t> bytes;
    bytes.reserve(b.length);
    const std::uint32_t first = b.offset / cl, last = (b.offset + b.length - 1) / cl;
    for (std::uint32_t ch = first; ch <= last; ++ch) {
      const auto& buf = source(ch);
      const std::uint32_t s = std::max(b.offset, ch * cl) - ch * cl - base(ch);
      const std::uint32_t e = std::min(b.offset + b.length, (ch + 1) * cl) - ch * cl - base(ch);
      bytes.insert(bytes.end(), buf.begin() + s, buf.begin() + e);
    }
    if (crc32c(bytes) != b.crc) {
      for (std::uint32_t ch = first; ch <= last; ++ch) bad[ch] = true;
      ok = false;
      continue;
    }
    out[b.offset] = std::move(bytes);
  }
  if (!ok) return std::nullopt;
  return out;
}

}  // namespace

Pool::ChunkSet Pool::read_chunks(const ContainerSealed& c, int enough,
                                 const std::vector<bool>& skip, std::optional<Rows> rows) {
  const int n = c.k + c.m;
  auto g = std::make_shared<Gather>(static_cast<std::size_t>(n));
  {
    std::lock_guard lock(mu_);
    for (int i = 0; i < n; ++i) {
      if (!skip.empty() && skip[static_cast<std::size_t>(i)]) {
        g->put(i, Result<std::vector<std::uint8_t>>::failure("suspect: failed a healthy read"));
        continue;
      }
      const auto it = stores_.find(c.stores[static_cast<std::size_t>(i)]);
      const Store store = it->second.store;
      const ChunkExpect e = expect(c, i);
      if (rows) {
        workers_->submit([g, i, store, e, r = *rows] {
          g->put(i, store.read_range(e, r.first, r.second - r.first));
        });
      } else {
        workers_->submit([g, i, store, e] { g->put(i, store.read_chunk(e)); });
      }
    }
  }
  ChunkSet set;
  set.chunks.resize(static_cast<std::size_t>(n));
  set.good.assign(static_cast<std::size_t>(n), false);
  set.errors.assign(static_cast<std::size_t>(n), "no answer yet");
  std::unique_lock lock(g->mu);
  g->cv.wait(lock, [&] { return g->good >= enough || static_cast<int>(g->arrival.size()) == n; });
  for (int i : g->arrival) {
    auto& r = *g->slots[static_cast<std::size_t>(i)];
    if (r.ok()) {
      set.chunks[static_cast<std::size_t>(i)] = std::move(r).value();
      set.good[static_cast<std::size_t>(i)] = true;
      ++set.good_count;
    } else {
      set.errors[static_cast<std::size_t>(i)] = r.error();
    }
  }
  return set;
}

bool Pool::reconstruct(const ContainerSealed& c, ChunkSet& set, const std::vector<int>& targets) {
  if (targets.empty()) return true;
  if (set.good_count < c.k) return false;
  std::vector<int> src;
  std::vector<const std::uint8_t*> src_ptr;
  for (int i = 0; i < c.k + c.m && static_cast<int>(src.size()) < c.k; ++i) {
    if (!set.good[static_cast<std::size_t>(i)]) continue;
    src.push_back(i);
    src_ptr.push_back(set.chunks[static_cast<std::size_t>(i)].data());
  }
  // Whole chunks or the same stripe rows of each: the length is that of the sources.
  const std::size_t len = set.chunks[static_cast<std::size_t>(src.front())].size();
  std::vector<std::uint8_t*> dst;
  for (int t : targets) {
    set.chunks[static_cast<std::size_t>(t)].assign(len, 0);
    dst.push_back(set.chunks[static_cast<std::size_t>(t)].data());
  }
  if (!coder(c.k, c.m).reconstruct(src, src_ptr, targets, dst, len)) return false;
  for (int t : targets) set.good[static_cast<std::size_t>(t)] = true;
  set.good_count += static_cast<int>(targets.size());
  return true;
}

Result<std::map<std::uint32_t, std::vector<std::uint8_t>>> Pool::fetch_blocks(
    const ContainerSealed& c, const std::vector<BlockRef>& blocks) {
  using R = Result<Blocks>;
  const std::uint32_t cl = c.chunk_len;
  // Healthy path: one range read per data chunk, covering the wanted blocks in it.
  std::map<int, std::pair<std::uint32_t, std::uint32_t>> ranges;  // chunk -> [begin, end)
  for (const auto& b : blocks) {
    for (std::uint32_t chunk = b.offset / cl; chunk <= (b.offset + b.length - 1) / cl; ++chunk) {
      const std::uint32_t s = std::max(b.offset, chunk * cl) - chunk * cl;
      const std::uint32_t e = std::min(b.offset + b.length, (chunk + 1) * cl) - chunk * cl;
      auto [it, fresh] = ranges.try_emplace(static_cast<int>(chunk), s, e);
      if (!fresh) it->second = {std::min(it->second.first, s), std::max(it->second.second, e)};
    }
  }
  auto g = std::make_shared<Gather>(static_cast<std::size_t>(c.k));
  {
    std::lock_guard lock(mu_);
    for (const auto& [chunk, r] : ranges) {
      const Store store = stores_.at(c.stores[static_cast<std::size_t>(chunk)]).store;
      const ChunkExpect e = expect(c, chunk);
      // Copies, not the structured bindings: clang cannot capture those.
      const int idx = chunk;
      const auto range = r;
      workers_->submit([g, idx, store, e, range] {
        g->put(idx, store.read_range(e, range.first, range.second - range.first));
      });
    }
  }
  bool answered = false;
  {
    std::unique_lock lock(g->mu);
    answered =
        g->cv.wait_for(lock, cfg_.hedge_delay, [&] { return g->arrival.size() == ranges.size(); });
  }
  // Chunks that failed the healthy read, or hold a block that failed its CRC, are not trusted
  // as decode sources below.
  std::vector<bool> suspect(static_cast<std::size_t>(c.k + c.m), false);
  if (answered) {
    for (const auto& [chunk, r] : ranges) {
      if (!g->slots[static_cast<std::size_t>(chunk)]->ok()) {
        suspect[static_cast<std::size_t>(chunk)] = true;
      }
    }
    if (std::none_of(suspect.begin(), suspect.end(), [](bool b) { return b; })) {
      auto out = assemble(
          blocks, cl, [&](std::uint32_t ch) -> const auto& { return g->slots[ch]->value(); },
          [&](std::uint32_t ch) { return ranges.at(static_cast<int>(ch)).first; }, suspect);
      if (out) {
        ++reads_healthy_;
        return std::move(*out);
      }
    }
  } else {
    ++reads_hedged_;
  }
  ++reads_degraded_;
  // Degraded, first try: the same stripe rows from all k + m chunks, the fastest k decoded.
  // Range reads skip the chunk CRC, so the block CRCs decide; if one fails, a source was bad.
  std::uint32_t lo = cl, hi = 0;
  for (const auto& [chunk, r] : ranges) {
    lo = std::min(lo, r.first);
    hi = std::max(hi, r.second);
  }
  {
    auto set = read_chunks(c, c.k, suspect, Rows{lo, hi});
    std::vector<int> missing;
    for (const auto& [chunk, r] : ranges) {
      if (!set.good[static_cast<std::size_t>(chunk)]) missing.push_back(chunk);
    }
    std::vector<bool> ignored(suspect.size(), false);
    if (set.good_count >= c.k && reconstruct(c, set, missing)) {
      auto out = assemble(
          blocks, cl, [&](std::uint32_t ch) -> const auto& { return set.chunks[ch]; },
          [&](std::uint32_t) { return lo; }, ignored);
      if (out) return std::move(*out);
    }
  }
  // Second try: whole chunks, each checked against its payload CRC, so a corrupt chunk is known
  // and left out; the fastest k good ones are decoded.
  auto set = read_chunks(c, c.k, {}, std::nullopt);
  if (set.good_count < c.k) {
    std::string why;
    for (int i = 0; i < c.k + c.m; ++i) {
      if (!set.good[static_cast<std::size_t>(i)]) {
        why += fmt::format("; chunk {} on store {}: {}", i, c.stores[static_cast<std::size_t>(i)],
                           set.errors[static_cast<std::size_t>(i)]);
      }
    }
    return R::failure(fmt::format("{}: only {} of {} chunks are readable, {} needed{}",
                                  container_label(c), set.good_count, c.k + c.m, c.k, why));
  }
  std::vector<int> missing;
  for (const auto& [chunk, r] : ranges) {
    if (!set.good[static_cast<std::size_t>(chunk)]) missing.push_back(chunk);
  }
  if (!reconstruct(c, set, missing)) {
    return R::failure(container_label(c) + ": reconstruction failed");
  }
  std::vector<bool> bad(suspect.size(), false);
  auto out = assemble(
      blocks, cl, [&](std::uint32_t ch) -> const auto& { return set.chunks[ch]; },
      [](std::uint32_t) { return 0U; }, bad);
  if (!out) {
    return R::failure(container_label(c) +
                      ": a block fails its checksum even after reconstruction from chunks that "
                      "pass theirs");
  }
  return std::move(*out);
}

Result<std::vector<std::uint8_t>> Pool::read(VdiskKey key, VirtualOffset offset,
                                             std::uint64_t length) {
  using R = Result<std::vector<std::uint8_t>>;
  std::vector<Piece> pieces;
  std::map<std::uint64_t, ContainerSealed> needed;
  {
    std::lock_guard lock(mu_);
    // Read-your-writes: unsealed blocks of this vdisk are sealed first.
    if (auto it = open_.find(key); it != open_.end()) {
      const std::uint64_t s = offset.value(), e = s + length;
      for (const auto& b : it->second.blocks) {
        if (b.voffset < e && b.voffset + b.length > s) {
          try {
            seal_locked(key);
          } catch (const std::exception& ex) {
            return R::failure(ex.what());
          }
          break;
        }
      }
    }
    pieces = index_.lookup(key, offset.value(), length);
    for (const auto& p : pieces) needed.try_emplace(p.container, containers_.at(p.container));
  }
  std::uint64_t covered = offset.value();
  for (const auto& p : pieces) {
    if (p.voffset != covered) break;
    covered += p.length;
  }
  if (covered != offset.value() + length) {
    return R::failure(fmt::format("vm {} vdisk {}: bytes from {:#x} are not in the ec pool",
                                  key.vm.value(), key.vdisk.value(), covered));
  }
  std::vector<std::uint8_t> out(length);
  for (const auto& [id, c] : needed) {
    std::vector<BlockRef> blocks;
    for (const auto& p : pieces) {
      if (p.container == id && std::none_of(blocks.begin(), blocks.end(), [&](const BlockRef& b) {
            return b.offset == p.block.offset;
          })) {
        blocks.push_back(p.block);
      }
    }
    auto got = fetch_blocks(c, blocks);
    if (!got.ok()) return R::failure(got.error());
    for (const auto& p : pieces) {
      if (p.container != id) continue;
      const auto& bytes = got.value().at(p.block.offset);
      std::copy_n(bytes.begin() + p.skip, p.length,
                  out.begin() + static_cast<std::ptrdiff_t>(p.voffset - offset.value()));
    }
  }
  return out;
}

}  // namespace v2p::ec
