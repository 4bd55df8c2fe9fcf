// The host flash cache as a policy sees it: per-VM statistics, quotas and priorities, and
// invalidation of a vdisk range. PolicyContext::cache() hands one out when `v2p serve` runs with
// --cache; it is null otherwise. docs/cache.md describes the mechanism behind it.
//
// Threads: every function is thread-safe and may be called from any hook. None does I/O except
// invalidate(), which may ask the file system for the image's layout (FIEMAP) when the cache has
// not learnt it yet.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "v2p/types.hpp"

namespace v2p {

// What the cache did for one VM since it started (resident_bytes: now).
struct CacheVmStats {
  std::uint64_t hits = 0;              // cache blocks served from flash
  std::uint64_t misses = 0;            // cache blocks read from the origin
  std::uint64_t bytes_from_flash = 0;  // request bytes served from flash
  std::uint64_t fills = 0;             // entries this VM brought in
  std::uint64_t evictions = 0;         // entries of this VM evicted for anyone
  std::uint64_t rejected = 0;          // misses the admission filter did not cache
  std::uint64_t corrupt = 0;           // entries dropped because their checksum failed
  std::uint64_t resident_bytes = 0;    // bytes of entries this VM owns (filled) now
  std::uint64_t quota_bytes = 0;       // 0 = no quota beyond the cache size
  int priority = 0;                    // higher evicts lower, never the other way round

  [[nodiscard]] double hit_ratio() const noexcept {
    const auto total = hits + misses;
    return total == 0 ? 0.0 : double(hits) / double(total);
  }
};

// The narrow control interface of the cache. Pure virtual: the cache implements it, a policy
// only calls it.
class CacheControl {
 public:
  virtual ~CacheControl() = default;

  // Bytes of flash the cache can hold and the size of one cache block.
  [[nodiscard]] virtual std::uint64_t capacity_bytes() const = 0;
  [[nodiscard]] virtual std::uint32_t block_bytes() const = 0;
  // Distinct entries (physical blocks) held now; shared blocks of cloned images count once.
  [[nodiscard]] virtual std::uint64_t entries() const = 0;

  // Names of the VMs the cache has seen or has a quota or priority for.
  [[nodiscard]] virtual std::vector<std::string> vms() const = 0;
  // Statistics of one VM; nullopt when the cache has never heard of it.
  [[nodiscard]] virtual std::optional<CacheVmStats> vm_stats(std::string_view vm) const = 0;

  // Caps the bytes the VM's entries may occupy (0 = no cap). Lowering a quota evicts the VM's
  // least recently used entries down to it before returning.
  virtual void set_quota(std::string_view vm, std::uint64_t bytes) = 0;
  // Class of service under contention: a VM evicts entries of VMs with a lower priority and of
  // its own, never of a higher one. Default 0.
  virtual void set_priority(std::string_view vm, int priority) = 0;

  // Drops every entry holding data of [offset, offset + length) of the vdisk (as named in the
  // server's config). Returns how many entries it dropped; 0 for an unknown vdisk.
  virtual std::uint64_t invalidate(std::string_view vdisk, VirtualOffset offset,
                                   std::uint64_t length) = 0;
};

}  // namespace v2p
