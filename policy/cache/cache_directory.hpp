// The cache's policy half (dm-cache style): which physical blocks are cached in which slots,
// who owns them, and — on a miss — whether to admit the block and whom to evict for it. It does
// no I/O; FlashCache (the mechanism) moves the data and calls in under its lock.
//
// Not thread-safe: the caller serialises every call.
//
// Slot life cycle: kFree → admit() → kFilling → complete_fill() → kValid → (evicted by a later
// admit(), or drop_range()/drop_slot()) → kFree. A slot dropped while pinned (a hit is reading
// it) or while filling becomes kDoomed and is freed by the last unpin() / by complete_fill().
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "policy/cache/cache_key.hpp"
#include "policy/cache/frequency_sketch.hpp"
#include "v2p/cache.hpp"
#include "v2p/policy.hpp"

namespace v2p::cache {

enum class SlotState : std::uint8_t { kFree, kFilling, kValid, kDoomed };

enum class AdmissionFilter : std::uint8_t {
  kFrequency,  // second-hit rule + TinyLFU duel with the victim (the default)
  kAlways,     // admit every miss: plain LRU (what the trace bench compares against)
};

class CacheDirectory {
 public:
  struct Options {
    std::uint32_t slots = 0;
    std::uint32_t block_bytes = 64 << 10;
    AdmissionFilter filter = AdmissionFilter::kFrequency;
    unsigned min_frequency = 2;  // misses before a block is admitted (kFrequency)
  };

  struct Fill {
    CacheSlot slot;
    std::uint64_t generation = 0;
    std::optional<CacheKey> evicted;  // the entry the slot held before
  };

  explicit CacheDirectory(Options options);

  [[nodiscard]] std::uint32_t slots() const noexcept { return opts_.slots; }
  [[nodiscard]] std::uint32_t block_bytes() const noexcept { return opts_.block_bytes; }
  [[nodiscard]] std::uint64_t entries() const noexcept { return index_.size(); }

  // The VM's number (created on first use).
  std::uint32_t vm(std::string_view name);
  [[nodiscard]] std::optional<std::uint32_t> find_vm(std::string_view name) const;
  [[nodiscard]] std::vector<std::string> vm_names() const;
  [[nodiscard]] CacheVmStats stats(std::uint32_t vm) const;
  // Lowering a quota evicts the VM's LRU entries (and abandons its fills) down to it.
  void set_quota(std::uint32_t vm, std::uint64_t bytes);
  void set_priority(std::uint32_t vm, int priority);

  struct Found {
    CacheSlot slot;
    SlotState state;
  };
  [[nodiscard]] std::optional<Found> find(const CacheKey& key) const;
  [[nodiscard]] const CacheKey& key_of(CacheSlot slot) const { return meta_[slot.value()].key; }
  [[nodiscard]] std::uint32_t length_of(CacheSlot slot) const { return meta_[slot.value()].length; }
  [[nodiscard]] std::uint64_t generation_of(CacheSlot slot) const {
    return meta_[slot.value()].generation;
  }
  [[nodiscard]] std::uint32_t owner_of(CacheSlot slot) const { return meta_[slot.value()].owner; }
  [[nodiscard]] SlotState state_of(CacheSlot slot) const { return meta_[slot.value()].state; }
  [[nodiscard]] std::uint32_t pins_of(CacheSlot slot) const { return meta_[slot.value()].pins; }

  // A kValid entry served `bytes` of a request of `vm`: counts the hit, makes it most recent.
  void hit(CacheSlot slot, std::uint32_t vm, std::uint64_t bytes);
  // A miss of `vm` on `key` (length bytes of origin data): counts it, asks the filter (after
  // `hint`) and, when admitted, reserves a slot (evicting if needed) in state kFilling.
  // count = false for a write-through store (not a miss of a read).
  std::optional<Fill> miss(std::uint32_t vm, const CacheKey& key, std::uint32_t length,
                           Admission hint, bool count = true);
  // Counts a miss that could not be cached at all (hole, a write in flight).
  void uncacheable_miss(std::uint32_t vm);
  // The data is on flash: kFilling → kValid. False when the slot was dropped meanwhile (then it
  // is kFree again, and must not be used).
  bool complete_fill(CacheSlot slot);
  // The fill failed: the reservation is undone.
  void abort_fill(CacheSlot slot);
  void pin(CacheSlot slot);
  void unpin(CacheSlot slot);

  // Drops every entry overlapping [sector, sector + sectors) on the device. Returns how many.
  std::uint64_t drop_range(DeviceId device, PhysicalSector sector, std::uint64_t sectors);
  // Drops one entry (its checksum failed); counts it against `vm`.
  void drop_corrupt(CacheSlot slot, std::uint32_t vm);

  // Restart: an entry found on flash. False (and nothing changes) when the slot or key is taken
  // by an entry of a newer generation; an older one is replaced.
  bool restore(CacheSlot slot, const CacheKey& key, std::string_view vm, std::uint32_t length,
               std::uint64_t generation);
  [[nodiscard]] std::uint64_t next_generation() const noexcept { return generation_; }
  void set_next_generation(std::uint64_t g) noexcept { generation_ = g; }
  // Every kValid slot, in slot order (what a clean shutdown records).
  [[nodiscard]] std::vector<CacheSlot> valid_slots() const;
  // Every key held (kValid or kFilling), in key order.
  [[nodiscard]] std::vector<CacheKey> keys() const;

  // Checks every invariant (index, lists, accounting, quotas); returns the first violation.
  [[nodiscard]] std::optional<std::string> check() const;

 private:
  static constexpr std::uint32_t kNone = 0xffffffffU;
  struct Meta {
    CacheKey key;
    std::uint32_t owner = kNone;
    std::uint32_t length = 0;
    std::uint64_t generation = 0;
    std::uint64_t last_access = 0;
    SlotState state = SlotState::kFree;
    bool charged = false;
    std::uint32_t pins = 0;
    std::uint32_t prev = kNone, next = kNone;  // owner's LRU list (kValid only)
  };
  struct Vm {
    std::string name;
    std::uint64_t quota = 0;
    int priority = 0;
    std::uint32_t head = kNone, tail = kNone;  // most / least recently used
    CacheVmStats stats;
  };

  void link_front(std::uint32_t slot);
  void unlink(std::uint32_t slot);
  void charge(std::uint32_t slot);
  void uncharge(std::uint32_t slot);
  // Removes a kValid or kFilling entry from the index; frees or dooms the slot.
  void remove(std::uint32_t slot);
  [[nodiscard]] std::uint32_t unpinned_tail(std::uint32_t vm) const;
  // The slot a fill of `length` bytes for `vm` may use: free, or a victim; kNone if none.
  [[nodiscard]] std::uint32_t choose_slot(std::uint32_t vm, std::uint32_t length) const;
  [[nodiscard]] bool over_quota(const Vm& v, std::uint64_t extra) const noexcept {
    return v.quota != 0 && v.stats.resident_bytes + extra > v.quota;
  }

  Options opts_;
  std::vector<Meta> meta_;
  std::vector<std::uint32_t> free_;
  std::map<CacheKey, std::uint32_t> index_;  // ordered: drop_range finds overlaps
  std::vector<Vm> vms_;
  struct NameHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  std::unordered_map<std::string, std::uint32_t, NameHash, std::equal_to<>> vm_by_name_;
  FrequencySketch sketch_;
  std::uint64_t clock_ = 0;
  std::uint64_t generation_ = 1;
};

}  // namespace v2p::cache
