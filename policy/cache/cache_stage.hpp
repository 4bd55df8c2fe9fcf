// CacheStage: a BlockBackend that serves reads of one vdisk from a shared FlashCache and
// forwards everything to `next` (a FileBackend over the image, or any other stage).
//
// Reads: each cache block the request touches is looked up by its physical origin location
// (OriginResolver); a hit is read from flash and checked (header and CRC-32C) before a byte of
// it is returned; a corrupt entry is dropped and the origin read instead. A miss asks the
// admission filter (and the caller's hook) whether to copy the whole block to flash.
// Writes, zeroing and trim: the entries of the range's old physical place are dropped before the
// request goes down, the range's place is learnt again afterwards and the entries at the new
// place are dropped too (a copy-on-write file system may have moved it). In write-through mode
// whole written blocks are then cached under their new place.
//
// Threads: as BlockBackend (concurrent calls from tagged worker threads).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "policy/cache/flash_cache.hpp"
#include "policy/cache/origin_resolver.hpp"
#include "vfilter/block_backend.hpp"

namespace v2p::cache {

class CacheStage final : public vfilter::BlockBackend {
 public:
  // `vdisk` names the vdisk for CacheControl::invalidate.
  CacheStage(std::shared_ptr<FlashCache> cache, std::shared_ptr<vfilter::BlockBackend> next,
             std::unique_ptr<OriginResolver> resolver, std::string vdisk);
  ~CacheStage() override;

  [[nodiscard]] std::uint64_t size() const override { return next_->size(); }
  [[nodiscard]] bool read_only() const override { return next_->read_only(); }
  [[nodiscard]] std::string describe() const override { return next_->describe(); }

  int read(const vfilter::IoTarget& who, std::span<std::byte> out, std::uint64_t offset) override;
  int write(const vfilter::IoTarget& who, std::span<const std::byte> data, std::uint64_t offset,
            vfilter::Fua fua) override;
  int write_zeroes(const vfilter::IoTarget& who, std::uint64_t offset, std::uint64_t length,
                   vfilter::MayPunch may_punch, vfilter::Fua fua) override;
  int trim(const vfilter::IoTarget& who, std::uint64_t offset, std::uint64_t length) override;
  int flush(const vfilter::IoTarget& who) override { return next_->flush(who); }

  // Drops the entries of a range (CacheControl::invalidate); returns how many.
  std::uint64_t invalidate(std::uint64_t offset, std::uint64_t length);
  // Writes whose range the file system moved (a new physical place was learnt).
  [[nodiscard]] std::uint64_t relocations() const;

 private:
  enum class BlockPlan : std::uint8_t { kOrigin, kHit, kFill };
  struct Block;
  // Where one cache block of a read comes from; may pin a slot or reserve a fill.
  // `vm` is looked up on the first call of a request.
  Block plan_block(const vfilter::IoTarget& who, std::optional<std::uint32_t>& vm,
                   std::uint64_t index);
  int serve_hit(Block& b, std::uint32_t vm, std::span<std::byte> piece, std::uint64_t skip);
  int serve_fill(const vfilter::IoTarget& who, Block& b, std::span<std::byte> piece,
                 std::uint64_t skip);
  // Caches `data` (a whole block at `block_offset`) under key when the block saw no other write.
  void store(std::uint32_t vm, const CacheKey& key, std::uint64_t index,
             std::span<const std::byte> data, Admission hint, std::uint64_t my_seq);
  // Marks the blocks of [offset, offset + length) as being written; returns the sequence.
  std::uint64_t begin_write(std::uint64_t offset, std::uint64_t length);
  void end_write(std::uint64_t offset, std::uint64_t length);
  // Drops the entries of the range's current physical place; returns how many.
  std::uint64_t drop_place(std::uint64_t offset, std::uint64_t length);
  // True when no write touched block `index` since sequence `seq` (caller holds the lock).
  [[nodiscard]] bool untouched_since(std::uint64_t index, std::uint64_t seq) const;
  // A mutating request: drops old and new place around `forward`; on success calls
  // after(sequence of this request) while its blocks are still marked written. Returns forward's
  // result.
  template <class Forward, class After>
  int mutate(std::uint64_t offset, std::uint64_t length, Forward&& forward, After&& after);

  std::shared_ptr<FlashCache> cache_;
  std::shared_ptr<vfilter::BlockBackend> next_;
  std::unique_ptr<OriginResolver> resolver_;
  std::string vdisk_;
  std::uint32_t block_;
  // Guarded by cache_->mu_: blocks being written, and the sequence of the last write to touch
  // each block (forgotten in bulk: a read that began before floor_ never fills).
  std::unordered_map<std::uint64_t, std::uint32_t> writers_;
  std::unordered_map<std::uint64_t, std::uint64_t> last_write_;
  std::uint64_t floor_ = 0;
  std::uint64_t relocations_ = 0;
};

}  // namespace v2p::cache
