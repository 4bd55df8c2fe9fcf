// TierStage: a BlockBackend that places each extent of a vdisk on a slow tier (the image, where
// every extent has its home at its own offset) or a fast tier (slots of a fast tier file), and
// moves extents between them in a background thread. The mechanism only: which extents move is
// decided by a policy (TierPolicy, or any v2p::Policy through TierControl) that queues requests.
//
// A move, crash-safe (tier_journal.hpp): copy the extent to its new place at the rate limit,
// fsync that file, read the copy back and compare its CRC-32C with the source's, then commit
// (journal append + fdatasync) and switch the in-memory table. Until the commit the table (in
// memory and on disk) names the old copy, which nothing but guest writes touches.
//
// Reads and writes during a move (the write-intent rule): guest I/O holds its extent's lock
// shared for the duration of the I/O, and a write bumps the extent's write generation first.
// The migration samples the generation under the lock held exclusively (no write in flight),
// copies without the lock (guest reads and writes go on, to the old copy), and commits under the
// exclusive lock only if the generation is unchanged; otherwise the copy is stale, it is
// abandoned (counted in `aborted`) and the move is queued again. So a read never sees the new
// copy before it is complete and committed, and a write is never left behind in the old copy.
//
// Threads: the BlockBackend calls come concurrently from tagged worker threads and do their file
// I/O on the calling thread (so the probe attributes it to the request). Control calls are
// non-blocking. The migration thread's own I/O is untagged: it is nobody's request.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "policy/tier/tier_journal.hpp"
#include "v2p/heat.hpp"
#include "v2p/tier.hpp"
#include "vfilter/block_backend.hpp"
#include "vfilter/file_backend.hpp"

namespace v2p::tier {

struct TierOptions {
  std::filesystem::path fast_file;  // created (sparse, fast_bytes) when absent
  std::uint64_t fast_bytes = 0;     // fast tier capacity; a multiple of extent_bytes is used
  std::uint64_t extent_bytes = 1ULL << 20;       // power of two, multiple of 4096
  std::uint64_t rate_bytes_per_s = 64ULL << 20;  // migration copy rate; 0 = unlimited
  bool want_direct = true;
  std::filesystem::path journal;      // default: fast_file + ".journal"
  std::filesystem::path status_file;  // default: fast_file + ".status"
  std::uint64_t heat_half_life_ns = 10'000'000'000ULL;
  double hot_threshold = 4.0;  // heat at which an extent counts as hot (status, policy)
  // Called by the migration thread after each copied chunk (tests inject I/O mid-copy).
  std::function<void(ExtentIndex, std::uint64_t done)> on_copy_chunk;
};

class TierStage final : public vfilter::BlockBackend {
 public:
  // Opens or creates the fast file and the journal, replays it, starts the migration thread.
  // Throws v2p::Error with a sentence on bad options or files.
  TierStage(std::shared_ptr<vfilter::BlockBackend> slow, TierOptions options);
  ~TierStage() override;
  TierStage(const TierStage&) = delete;
  TierStage& operator=(const TierStage&) = delete;

  // BlockBackend
  [[nodiscard]] std::uint64_t size() const override { return slow_->size(); }
  [[nodiscard]] bool read_only() const override { return slow_->read_only(); }
  [[nodiscard]] std::string describe() const override { return slow_->describe(); }
  int read(const vfilter::IoTarget& who, std::span<std::byte> out, std::uint64_t offset) override;
  int write(const vfilter::IoTarget& who, std::span<const std::byte> data, std::uint64_t offset,
            vfilter::Fua fua) override;
  int write_zeroes(const vfilter::IoTarget& who, std::uint64_t offset, std::uint64_t length,
                   vfilter::MayPunch may_punch, vfilter::Fua fua) override;
  int trim(const vfilter::IoTarget& who, std::uint64_t offset, std::uint64_t length) override;
  int flush(const vfilter::IoTarget& who) override;

  // Mechanism control (non-blocking).
  [[nodiscard]] const Geometry& geometry() const noexcept { return geometry_; }
  [[nodiscard]] VdiskKey key() const;  // learnt from the first request; {0,0} before
  [[nodiscard]] Placement placement(ExtentIndex e) const;
  [[nodiscard]] std::vector<ExtentIndex> fast_extents() const;
  TierRequestResult request(ExtentIndex e, Tier to);
  [[nodiscard]] TierVdiskStatus status() const;
  void set_class_of_service(TierClassOfService cos);
  [[nodiscard]] TierClassOfService class_of_service() const;
  [[nodiscard]] const TierOptions& options() const noexcept { return opts_; }

  // The stage's own heat (every access, weighted by the class of service), for the autopilot.
  [[nodiscard]] std::vector<HotExtent> hottest(std::size_t n, std::uint64_t now_ns) const;
  [[nodiscard]] double heat(ExtentIndex e, std::uint64_t now_ns) const;

  // Blocks until the queue is empty and no copy runs, or timeout; true when idle.
  bool wait_idle(std::chrono::milliseconds timeout);
  // Writes the status file now (the migration thread does it every second and after moves).
  void write_status_file() const;

 private:
  template <class F>
  int for_each_extent(std::uint64_t offset, std::uint64_t length, bool is_write, F&& f);
  void note_access(const vfilter::IoTarget& who, std::uint64_t offset, std::uint64_t length);
  void migration_loop();
  // 0: committed; 1: skipped (already there, no space); -EAGAIN: aborted, requeue; else -errno.
  // With `exclusive` the extent stays locked for the whole copy (writes wait): the fallback after
  // kAbortsBeforeExclusive aborted attempts, so an extent written all the time still moves.
  int migrate(ExtentIndex e, Tier to, bool exclusive);
  [[nodiscard]] std::uint64_t fast_cap_locked() const noexcept;
  bool throttle(std::uint64_t bytes);
  [[nodiscard]] std::uint64_t extent_length(ExtentIndex e) const noexcept;
  [[nodiscard]] std::shared_mutex& lock_of(ExtentIndex e) const noexcept;

  std::shared_ptr<vfilter::BlockBackend> slow_;
  TierOptions opts_;
  Geometry geometry_;
  std::unique_ptr<vfilter::FileBackend> fast_;
  std::unique_ptr<TierJournal> journal_;

  // Data path: striped extent locks; placement read under the stripe (shared), switched under it
  // (exclusive) and under meta_mu_.
  static constexpr std::size_t kStripes = 256;
  mutable std::array<std::shared_mutex, kStripes> stripes_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> write_gen_;
  std::vector<Placement> live_;  // the committed table, as the data path reads it
  // Migration thread only: the write generation at which a fast extent's home was last identical
  // to it (set by its promotion), for demotions without a copy.
  static constexpr std::uint64_t kNotClean = ~std::uint64_t{0};
  std::vector<std::uint64_t> clean_since_;
  std::vector<std::uint32_t> clean_crc_;

  mutable std::mutex meta_mu_;  // queue, counters, identity, CoS, reserved slot
  std::condition_variable meta_cv_;
  struct Move {
    ExtentIndex extent;
    Tier to;
    unsigned attempts;
  };
  std::deque<Move> queue_;
  std::uint64_t queued_promotions_ = 0;
  std::uint64_t fast_count_ = 0;
  std::vector<std::uint8_t> queued_to_;  // per extent: 0 none, 1 slow, 2 fast
  bool stop_ = false;
  bool copying_ = false;
  ExtentIndex current_{0};
  Tier current_to_ = Tier::kSlow;
  std::atomic<std::uint64_t> current_done_{0};
  std::uint64_t promoted_ = 0, demoted_ = 0, aborted_ = 0, failed_ = 0, bytes_migrated_ = 0,
                clean_demotions_ = 0;
  VdiskKey key_{};
  std::string vm_name_, vdisk_name_;
  std::atomic<bool> identified_{false};
  TierClassOfService cos_;
  std::atomic<double> heat_weight_{1.0};

  mutable std::mutex heat_mu_;
  HeatMap heat_;

  std::chrono::steady_clock::time_point next_allowed_{};
  std::thread thread_;
};

// Parses the status file a running stage writes (JSON); throws v2p::Error.
[[nodiscard]] TierVdiskStatus read_status_file(const std::filesystem::path& path);

}  // namespace v2p::tier
