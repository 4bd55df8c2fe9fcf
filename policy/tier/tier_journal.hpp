// The tier's placement, and how it survives a crash.
//
// RemapTable: extent -> (tier, slot). An extent on the slow tier lives at its home, its own
// offset in the slow image; an extent on the fast tier lives in a slot of the fast tier file
// (slot * extent_bytes). Slots and extents are distinct types: they are different address spaces.
//
// TierJournal: an append-only file of 64-byte records, each ending in its own CRC-32C: one
// header (the geometry) and then one record per committed move, with consecutive sequence
// numbers. A move is committed when its record is on disk (write + fdatasync); the copy it
// names was written and synced before. Replay applies records in order and stops at the first
// that is short, fails its CRC or breaks the sequence: that is the torn tail of an append the
// crash interrupted, dropped (and truncated away when the journal is opened for writing).
// Because the old copy of an extent is never written before its move commits, a crash at any
// point leaves the table pointing at a complete copy: the old one before the commit, the new one
// after.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

#include "v2p/tier.hpp"
#include "v2p/types.hpp"

namespace v2p::tier {

using ExtentIndex = Strong<struct ExtentIndexTag, std::uint64_t>;  // vdisk offset / extent_bytes
using FastSlot = Strong<struct FastSlotTag, std::uint64_t>;  // fast file offset / extent_bytes

struct Geometry {
  std::uint64_t extent_bytes = 0;
  std::uint64_t extents = 0;     // of the vdisk (the last one may be partial)
  std::uint64_t fast_slots = 0;  // of the fast tier file
  constexpr bool operator==(const Geometry&) const = default;
};

struct Placement {
  Tier tier = Tier::kSlow;
  FastSlot slot{0};  // meaningful on the fast tier only
  constexpr bool operator==(const Placement&) const = default;
};

// Thread-compatible: the owner serialises mutation (the tier stage: its migration thread).
class RemapTable {
 public:
  explicit RemapTable(Geometry geometry);

  [[nodiscard]] const Geometry& geometry() const noexcept { return geometry_; }
  [[nodiscard]] Placement at(ExtentIndex e) const noexcept { return entries_[e.value()]; }
  [[nodiscard]] std::optional<ExtentIndex> owner(FastSlot s) const noexcept;
  // The lowest free slot, skipping `reserved` (a slot a copy in progress writes to).
  [[nodiscard]] std::optional<FastSlot> free_slot() const noexcept;
  // Moves an extent. Returns false (and changes nothing) when the extent or slot is out of range
  // or the slot belongs to another extent.
  bool place(ExtentIndex e, Placement p) noexcept;
  [[nodiscard]] std::uint64_t fast_count() const noexcept { return fast_count_; }
  [[nodiscard]] std::vector<ExtentIndex> fast_extents() const;

 private:
  Geometry geometry_;
  std::vector<Placement> entries_;
  std::vector<std::uint64_t> slot_owner_;  // extent + 1, 0 = free
  std::uint64_t fast_count_ = 0;
};

struct JournalRecord {
  std::uint64_t seq = 0;  // 1, 2, … (the header is 0)
  ExtentIndex extent{0};
  Placement to;
  std::uint32_t data_crc = 0;  // CRC-32C of the extent's bytes as copied and read back
};

struct ReplayReport {
  std::uint64_t records = 0;        // move records applied
  std::uint64_t dropped_bytes = 0;  // torn or invalid tail
  std::uint64_t next_seq = 1;
};

// What a journal holds, read without changing it (`v2p tier status`). Throws v2p::Error when the
// file is missing, has no valid header, or names an impossible placement.
struct JournalContents {
  Geometry geometry;
  RemapTable table{Geometry{}};
  ReplayReport report;
};
[[nodiscard]] JournalContents read_journal(const std::filesystem::path& path);

class TierJournal {
 public:
  // Opens (replaying it into table()) or creates the journal for `geometry`; truncates a torn
  // tail and rewrites the journal compacted (one record per fast extent). Throws v2p::Error with
  // a sentence when the journal belongs to a different geometry or cannot be written.
  TierJournal(std::filesystem::path path, Geometry geometry);
  ~TierJournal();
  TierJournal(const TierJournal&) = delete;
  TierJournal& operator=(const TierJournal&) = delete;

  [[nodiscard]] const RemapTable& table() const noexcept { return table_; }
  [[nodiscard]] const ReplayReport& replay() const noexcept { return replay_; }
  [[nodiscard]] std::uint64_t records_since_compaction() const noexcept { return since_compact_; }
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }

  // Commits a move: appends its record and fdatasyncs, then applies it to table(). Returns 0, or
  // -errno with the journal and the table unchanged (a partial append is cut off again; if even
  // that fails the journal refuses further commits with -EIO).
  int commit(ExtentIndex extent, Placement to, std::uint32_t data_crc) noexcept;
  // Rewrites the journal as header + one record per fast extent (temp file, fsync, rename, fsync
  // of the directory). Returns 0 or -errno; on failure the old journal stays in use.
  int compact() noexcept;

 private:
  std::filesystem::path path_;
  Geometry geometry_;
  RemapTable table_;
  ReplayReport replay_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
  std::uint64_t next_seq_ = 1;
  std::uint64_t since_compact_ = 0;
  bool broken_ = false;
};

}  // namespace v2p::tier
