#include "policy/cache/cache_stage.hpp"

#include <algorithm>
#include <cstring>

#include "common/crc32c.hpp"
#include "common/host_layout/aligned_buffer.hpp"

namespace v2p::cache {

using host_layout::AlignedBuffer;
namespace {

// One slot-sized buffer per worker thread (header + block), grown on demand.
std::byte* slot_buffer(std::size_t bytes) {
  thread_local AlignedBuffer buf;
  buf.resize(bytes);
  return buf.data();
}

std::span<std::byte, kHeaderBytes> header_of(std::byte* slot) {
  return std::span<std::byte, kHeaderBytes>(slot, kHeaderBytes);
}

}  // namespace

struct CacheStage::Block {
  BlockPlan plan = BlockPlan::kOrigin;
  std::uint64_t index = 0;
  std::uint64_t offset = 0;  // in the vdisk
  std::uint32_t length = 0;
  CacheKey key;
  CacheSlot slot;
  std::uint64_t generation = 0;
  std::uint64_t seq = 0;  // write sequence when the plan was made
};

CacheStage::CacheStage(std::shared_ptr<FlashCache> cache,
                       std::shared_ptr<vfilter::BlockBackend> next,
                       std::unique_ptr<OriginResolver> resolver, std::string vdisk)
    : cache_(std::move(cache)),
      next_(std::move(next)),
      resolver_(std::move(resolver)),
      vdisk_(std::move(vdisk)),
      block_(cache_->block_bytes()) {
  cache_->attach(vdisk_, this);
}

CacheStage::~CacheStage() {
  cache_->detach(vdisk_, this);
}

std::uint64_t CacheStage::relocations() const {
  std::lock_guard lock(cache_->mu_);
  return relocations_;
}

bool CacheStage::untouched_since(std::uint64_t index, std::uint64_t seq) const {
  if (seq < floor_ || writers_.contains(index)) return false;
  const auto it = last_write_.find(index);
  return it == last_write_.end() || it->second <= seq;
}

CacheStage::Block CacheStage::plan_block(const vfilter::IoTarget& who,
                                         std::optional<std::uint32_t>& vm, std::uint64_t index) {
  Block b;
  b.index = index;
  b.offset = index * block_;
  b.length = static_cast<std::uint32_t>(std::min<std::uint64_t>(block_, size() - b.offset));
  auto& dir = cache_->dir_;
  // The sequence before the resolver answers: a write that ends before this load has refreshed
  // the resolver already; one that begins after it is seen by untouched_since().
  b.seq = cache_->seq_.load(std::memory_order_acquire);
  const auto key = resolver_->locate(b.offset, b.length);
  std::shared_ptr<const AdmitHook> hook;
  {
    std::lock_guard lock(cache_->mu_);
    if (!vm) vm = dir.vm(who.vm);
    if (!key || !untouched_since(index, b.seq)) {
      dir.uncacheable_miss(*vm);
      return b;
    }
    b.key = *key;
    if (const auto found = dir.find(b.key)) {
      if (found->state == SlotState::kValid && dir.length_of(found->slot) == b.length) {
        dir.pin(found->slot);
        b.plan = BlockPlan::kHit;
        b.slot = found->slot;
        b.generation = dir.generation_of(found->slot);
        return b;
      }
    }
    hook = cache_->admit_;
    if (!hook) {  // the common case: decided in this one critical section
      if (const auto fill = dir.miss(*vm, b.key, b.length, Admission::kDefault)) {
        b.plan = BlockPlan::kFill;
        b.slot = fill->slot;
        b.generation = fill->generation;
      }
      return b;
    }
  }
  IoEvent ev;
  ev.vdisk = VdiskKey{VmId(who.vm_id), VdiskId(who.vdisk_id)};
  ev.vm_name = who.vm;
  ev.vdisk_name = who.vdisk;
  ev.op = IoOp::kRead;
  ev.voffset = VirtualOffset(b.offset);
  ev.length = b.length;
  ev.has_physical = true;
  ev.device = b.key.device;
  ev.sector = b.key.sector;
  const Admission hint = (*hook)(ev);
  std::lock_guard lock(cache_->mu_);
  if (!untouched_since(index, b.seq)) {
    dir.uncacheable_miss(*vm);
    return b;
  }
  if (const auto fill = dir.miss(*vm, b.key, b.length, hint)) {
    b.plan = BlockPlan::kFill;
    b.slot = fill->slot;
    b.generation = fill->generation;
  }
  return b;
}

int CacheStage::serve_hit(Block& b, std::uint32_t vm, std::span<std::byte> piece,
                          std::uint64_t skip) {
  std::byte* buf = slot_buffer(kHeaderBytes + block_);
  const int rc = cache_->read_slot(b.slot, buf);
  bool good = false;
  if (rc == 0) {
    const auto h = decode_entry(header_of(buf), block_);
    good = h && h->key == b.key && h->slot == b.slot && h->length == b.length &&
           h->generation == b.generation &&
           crc32c(std::span<const std::byte>(buf + kHeaderBytes, b.length)) == h->data_crc;
  }
  if (good) std::memcpy(piece.data(), buf + kHeaderBytes + skip, piece.size());
  std::lock_guard lock(cache_->mu_);
  auto& dir = cache_->dir_;
  if (good) {
    dir.hit(b.slot, vm, piece.size());
  } else {
    // Torn, corrupt or unreadable: never served; the origin answers and the entry goes.
    if (dir.state_of(b.slot) == SlotState::kValid && dir.key_of(b.slot) == b.key)
      dir.drop_corrupt(b.slot, vm);
    dir.uncacheable_miss(vm);
  }
  dir.unpin(b.slot);
  return good ? 0 : 1;
}

int CacheStage::serve_fill(const vfilter::IoTarget& who, Block& b, std::span<std::byte> piece,
                           std::uint64_t skip) {
  std::byte* buf = slot_buffer(kHeaderBytes + block_);
  std::byte* data = buf + kHeaderBytes;
  const int rc = next_->read(who, std::span<std::byte>(data, b.length), b.offset);
  auto& dir = cache_->dir_;
  if (rc != 0) {
    std::lock_guard lock(cache_->mu_);
    dir.abort_fill(b.slot);
    return rc;
  }
  std::memcpy(piece.data(), data + skip, piece.size());
  EntryHeader h;
  h.key = b.key;
  h.slot = b.slot;
  h.length = b.length;
  h.generation = b.generation;
  h.data_crc = crc32c(std::span<const std::byte>(data, b.length));
  {
    std::lock_guard lock(cache_->mu_);
    if (!untouched_since(b.index, b.seq) || dir.state_of(b.slot) != SlotState::kFilling) {
      dir.abort_fill(b.slot);
      return 0;
    }
    h.vm = dir.vm_names()[dir.owner_of(b.slot)];
  }
  encode_entry(h, header_of(buf));
  const int w = cache_->write_slot(b.slot, buf);
  std::lock_guard lock(cache_->mu_);
  // A write that began meanwhile dropped the key (the slot is doomed) or may still be on its
  // way: either way the copy is not trusted.
  if (w != 0 || !untouched_since(b.index, b.seq)) {
    dir.abort_fill(b.slot);
  } else {
    dir.complete_fill(b.slot);
  }
  return 0;
}

int CacheStage::read(const vfilter::IoTarget& who, std::span<std::byte> out, std::uint64_t offset) {
  std::optional<std::uint32_t> vm;  // looked up by the first plan
  const std::uint64_t end = offset + out.size();
  std::uint64_t run = offset;  // start of blocks read from the origin in one go
  auto flush_run = [&](std::uint64_t upto) {
    if (upto <= run) return 0;
    return next_->read(who, out.subspan(run - offset, upto - run), run);
  };
  for (std::uint64_t pos = offset; pos < end;) {
    const std::uint64_t index = pos / block_;
    const std::uint64_t piece_end = std::min<std::uint64_t>((index + 1) * block_, end);
    Block b = plan_block(who, vm, index);
    if (b.plan == BlockPlan::kOrigin) {
      pos = piece_end;
      continue;
    }
    if (const int rc = flush_run(pos); rc != 0) {
      std::lock_guard lock(cache_->mu_);
      if (b.plan == BlockPlan::kHit)
        cache_->dir_.unpin(b.slot);
      else
        cache_->dir_.abort_fill(b.slot);
      return rc;
    }
    const auto piece = out.subspan(pos - offset, piece_end - pos);
    const std::uint64_t skip = pos - b.offset;
    int rc = 0;
    if (b.plan == BlockPlan::kHit) {
      rc = serve_hit(b, *vm, piece, skip);
      if (rc == 1) rc = next_->read(who, piece, pos);
    } else {
      rc = serve_fill(who, b, piece, skip);
    }
    if (rc != 0) return rc;
    pos = piece_end;
    run = pos;
  }
  return flush_run(end);
}

std::uint64_t CacheStage::begin_write(std::uint64_t offset, std::uint64_t length) {
  std::lock_guard lock(cache_->mu_);
  const std::uint64_t seq = ++cache_->seq_;
  for (std::uint64_t i = offset / block_; i * block_ < offset + length; ++i) {
    ++writers_[i];
    last_write_[i] = seq;
  }
  return seq;
}

void CacheStage::end_write(std::uint64_t offset, std::uint64_t length) {
  std::lock_guard lock(cache_->mu_);
  const std::uint64_t seq = ++cache_->seq_;
  for (std::uint64_t i = offset / block_; i * block_ < offset + length; ++i) {
    if (auto it = writers_.find(i); it != writers_.end() && --it->second == 0) writers_.erase(it);
    last_write_[i] = seq;
  }
  if (last_write_.size() > (1U << 16)) {
    // Forget the history in bulk: reads planned before now will not fill.
    floor_ = seq;
    last_write_.clear();
  }
}

std::uint64_t CacheStage::drop_place(std::uint64_t offset, std::uint64_t length) {
  const auto runs = resolver_->runs(offset, length);
  std::lock_guard lock(cache_->mu_);
  std::uint64_t n = 0;
  for (const auto& r : runs)
    n += cache_->dir_.drop_range(r.start.device, r.start.sector,
                                 (r.length + kSectorSize - 1) / kSectorSize);
  return n;
}

template <class Forward, class After>
int CacheStage::mutate(std::uint64_t offset, std::uint64_t length, Forward&& forward,
                       After&& after) {
  const std::uint64_t seq = begin_write(offset, length);
  const auto before = resolver_->runs(offset, length);
  drop_place(offset, length);
  const int rc = forward();
  // Learn the place again even after a failure: part of the range may have been written.
  resolver_->refresh(offset, length);
  const auto after_runs = resolver_->runs(offset, length);
  drop_place(offset, length);
  const bool moved =
      before.size() != after_runs.size() ||
      !std::equal(before.begin(), before.end(), after_runs.begin(),
                  [](const auto& x, const auto& y) {
                    return x.offset == y.offset && x.length == y.length && x.start == y.start;
                  });
  if (moved) {
    std::lock_guard lock(cache_->mu_);
    ++relocations_;
  }
  if (rc == 0) after(seq);
  end_write(offset, length);
  return rc;
}

void CacheStage::store(std::uint32_t vm, const CacheKey& key, std::uint64_t index,
                       std::span<const std::byte> data, Admission hint, std::uint64_t my_seq) {
  auto& dir = cache_->dir_;
  const auto length = static_cast<std::uint32_t>(data.size());
  std::optional<CacheDirectory::Fill> fill;
  std::string owner;
  auto only_mine = [&] {
    const auto w = writers_.find(index);
    const auto l = last_write_.find(index);
    return w != writers_.end() && w->second == 1 && l != last_write_.end() && l->second == my_seq;
  };
  {
    std::lock_guard lock(cache_->mu_);
    if (!only_mine()) return;
    fill = dir.miss(vm, key, length, hint, /*count=*/false);
    if (!fill) return;
    owner = dir.vm_names()[vm];
  }
  std::byte* buf = slot_buffer(kHeaderBytes + block_);
  std::memcpy(buf + kHeaderBytes, data.data(), length);
  EntryHeader h{key,
                fill->slot,
                length,
                fill->generation,
                crc32c(std::span<const std::byte>(buf + kHeaderBytes, length)),
                owner};
  encode_entry(h, header_of(buf));
  const int w = cache_->write_slot(fill->slot, buf);
  std::lock_guard lock(cache_->mu_);
  if (w != 0 || !only_mine()) {
    dir.abort_fill(fill->slot);
  } else {
    dir.complete_fill(fill->slot);
  }
}

int CacheStage::write(const vfilter::IoTarget& who, std::span<const std::byte> data,
                      std::uint64_t offset, vfilter::Fua fua) {
  const std::uint64_t length = data.size();
  auto forward = [&] { return next_->write(who, data, offset, fua); };
  if (cache_->write_mode() != WriteMode::kWriteThrough)
    return mutate(offset, length, forward, [](std::uint64_t) {});
  // Write-through: the whole blocks the write covers, and whether each was cached before.
  std::vector<std::pair<std::uint64_t, bool>> whole;
  const std::uint64_t disk = size();
  for (std::uint64_t i = (offset + block_ - 1) / block_; i * block_ < offset + length; ++i) {
    const std::uint64_t bs = i * block_, be = std::min<std::uint64_t>(bs + block_, disk);
    if (be > offset + length) break;
    const auto key = resolver_->locate(bs, be - bs);
    whole.emplace_back(i, false);
    if (!key) continue;
    std::lock_guard lock(cache_->mu_);
    const auto f = cache_->dir_.find(*key);
    whole.back().second = f && f->state == SlotState::kValid;
  }
  std::uint32_t vm = 0;
  {
    std::lock_guard lock(cache_->mu_);
    vm = cache_->dir_.vm(who.vm);
  }
  return mutate(offset, length, forward, [&](std::uint64_t seq) {
    for (const auto& [i, was_cached] : whole) {
      const std::uint64_t bs = i * block_;
      const std::uint64_t len = std::min<std::uint64_t>(block_, disk - bs);
      if (const auto key = resolver_->locate(bs, len)) {
        store(vm, *key, i, data.subspan(bs - offset, len),
              was_cached ? Admission::kAdmit : Admission::kDefault, seq);
      }
    }
  });
}

int CacheStage::write_zeroes(const vfilter::IoTarget& who, std::uint64_t offset,
                             std::uint64_t length, vfilter::MayPunch may_punch, vfilter::Fua fua) {
  return mutate(
      offset, length, [&] { return next_->write_zeroes(who, offset, length, may_punch, fua); },
      [](std::uint64_t) {});
}

int CacheStage::trim(const vfilter::IoTarget& who, std::uint64_t offset, std::uint64_t length) {
  return mutate(
      offset, length, [&] { return next_->trim(who, offset, length); }, [](std::uint64_t) {});
}

std::uint64_t CacheStage::invalidate(std::uint64_t offset, std::uint64_t length) {
  begin_write(offset, length);
  const std::uint64_t n = drop_place(offset, length);
  end_write(offset, length);
  return n;
}

}  // namespace v2p::cache
