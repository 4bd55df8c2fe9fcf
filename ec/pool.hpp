// The erasure-coded pool: cold vdisk blocks go into time-ordered containers, each container is
// split into k data + m parity chunks placed on k + m stores on distinct failure domains, and the
// block -> (container, offset, CRC) map lives in the metadata log.
//
// Acknowledgement: write() buffers; a container is sealed (chunks durable, then its metadata
// record durable) when it is full or on flush(). Data is acknowledged when the write() that
// filled its container, or the next flush(), returns. Anything not yet sealed is lost in a crash.
//
// Threads: every public method may be called from any thread; metadata is behind one mutex,
// chunk I/O runs on the pool's I/O workers. All methods may block on I/O.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "ec/coder.hpp"
#include "ec/config.hpp"
#include "ec/extent_index.hpp"
#include "ec/failure_domain.hpp"
#include "ec/io_workers.hpp"
#include "ec/metadata_log.hpp"
#include "ec/placement.hpp"
#include "ec/result.hpp"
#include "ec/store.hpp"
#include "v2p/types.hpp"

namespace v2p::ec {

struct ScrubReport {
  std::uint64_t containers = 0;
  std::uint64_t chunks_checked = 0;
  std::uint64_t chunks_bad = 0;       // missing, truncated or failing a checksum
  std::uint64_t chunks_repaired = 0;  // rewritten in place
  std::uint64_t chunks_offline = 0;   // bad, on a store that is not online: rebuild it
  std::uint64_t unrepairable = 0;     // containers with fewer than k good chunks
  std::uint64_t orphans_removed = 0;  // chunk files no container refers to (crashed writes)
  std::vector<std::string> problems;
};

struct RebuildReport {
  std::uint64_t chunks_total = 0;
  std::uint64_t chunks_intact = 0;
  std::uint64_t chunks_rebuilt = 0;
  std::uint64_t failed = 0;
  std::vector<std::string> problems;
};

struct RebuildProgress {
  bool running = false;
  std::uint32_t store = 0;
  std::uint64_t done = 0;
  std::uint64_t total = 0;
  std::string error;
};

struct ReadCounters {
  std::uint64_t healthy = 0;   // served from data chunks
  std::uint64_t degraded = 0;  // reconstructed from the fastest k chunks
  std::uint64_t hedged = 0;    // degraded because data chunks were slower than hedge_delay
};

struct StoreStatus {
  std::uint32_t id = 0;
  std::string path;
  std::string state;
  std::string domain;
  bool configured = false;
  std::uint64_t chunks_expected = 0;
  std::uint64_t chunks_present = 0;
};

struct VmStatus {
  std::uint32_t vm = 0;
  std::uint64_t protected_bytes = 0;  // vdisk bytes currently mapped to containers
  std::uint64_t stored_bytes = 0;     // chunk bytes of its containers, parity included
  std::uint64_t containers = 0;
  std::map<std::string, std::uint64_t> layouts;  // "4+2" -> containers
  std::vector<std::string> domains;              // failure domains holding its chunks
  std::uint64_t containers_sharing_domains = 0;  // with two chunks on one domain
  std::uint64_t chunks_missing = 0;              // expected but absent right now
};

struct PoolStatus {
  std::uint64_t pool_id = 0;
  std::uint64_t containers = 0;
  std::uint64_t unsealed_bytes = 0;
  std::vector<VmStatus> vms;
  std::vector<StoreStatus> stores;
  RebuildProgress rebuild;
  ReadCounters reads;
  std::string dropped_tail;  // what open cut off the metadata log, if anything
};

using ProgressFn = std::function<void(std::uint64_t done, std::uint64_t total)>;

class Pool {
 public:
  // Opens (or creates) the pool. New, empty store directories are adopted; a store that was
  // adopted before and has lost its identity is offline until rebuilt. Throws v2p::Error.
  explicit Pool(PoolConfig config);
  // Waits for a background rebuild; unsealed data is dropped (it was never acknowledged).
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Throws v2p::Error when a container cannot be made durable (its data stays buffered).
  void write(VdiskKey key, VirtualOffset offset, std::span<const std::uint8_t> bytes);
  void flush();
  // Exactly the bytes last written, or a failure saying why not (never wrong data).
  Result<std::vector<std::uint8_t>> read(VdiskKey key, VirtualOffset offset, std::uint64_t length);

  ScrubReport scrub();
  // Re-creates every chunk that belongs on `store` and is missing or bad there; an empty
  // directory in the store's place is adopted first. Throws v2p::Error when the store cannot be.
  RebuildReport rebuild(std::uint32_t store, const ProgressFn& progress = {});
  void start_rebuild(std::uint32_t store);
  void wait_rebuild();
  // Moves every chunk off `store` onto others (before removing it from the configuration).
  RebuildReport evacuate(std::uint32_t store, const ProgressFn& progress = {});
  // Moves chunks from stores above the mean load to the least loaded ones (stores were added),
  // failure domains respected; chunks_total = moves planned, chunks_rebuilt = moves done.
  RebuildReport rebalance(const ProgressFn& progress = {});

  [[nodiscard]] PoolStatus status() const;
  [[nodiscard]] std::uint64_t pool_id() const noexcept { return pool_id_; }
  [[nodiscard]] const PoolConfig& config() const noexcept { return cfg_; }

 private:
  struct StoreInfo {
    Store store;
    FailureDomain domain;
    bool configured = false;
    bool adopted = false;
  };
  struct OpenContainer {
    std::vector<std::uint8_t> data;
    std::vector<BlockRef> blocks;
  };
  // Every chunk of a container read and checked; slots of bad chunks hold the reason.
  struct ChunkSet {
    std::vector<std::vector<std::uint8_t>> chunks;
    std::vector<bool> good;
    std::vector<std::string> errors;
    int good_count = 0;
  };

  void apply(const LogRecord& r);
  const Coder& coder(int k, int m);
  void seal_locked(VdiskKey key);
  std::vector<Candidate> online_candidates_locked(std::span<const std::uint32_t> exclude) const;
  ChunkExpect expect(const ContainerSealed& c, int index) const;
  using Rows = std::pair<std::uint32_t, std::uint32_t>;  // [begin, end) within every chunk
  // Reads all k + m chunks (whole and CRC-checked, or only `rows`), except those marked in
  // `skip`; returns once `enough` are good or all have answered.
  ChunkSet read_chunks(const ContainerSealed& c, int enough, const std::vector<bool>& skip = {},
                       std::optional<Rows> rows = std::nullopt);
  // Fills the bad slots of `set` listed in `targets` from k good ones.
  bool reconstruct(const ContainerSealed& c, ChunkSet& set, const std::vector<int>& targets);
  Result<std::map<std::uint32_t, std::vector<std::uint8_t>>> fetch_blocks(
      const ContainerSealed& c, const std::vector<BlockRef>& blocks);
  RebuildReport rebuild_impl(std::uint32_t store, const ProgressFn& progress);
  // Writes chunk `index` of sealed container `c` (its header built from `c`) to `store`.
  [[nodiscard]] Result<bool> write_chunk_of(const ContainerSealed& c, int index, const Store& store,
                                            std::span<const std::uint8_t> payload) const;

  PoolConfig cfg_;
  std::unique_ptr<MetadataLog> log_;
  std::uint64_t pool_id_ = 0;
  mutable std::mutex mu_;
  std::map<std::uint32_t, StoreInfo> stores_;
  std::map<std::uint64_t, ContainerSealed> containers_;
  std::map<std::uint32_t, std::uint64_t> store_load_;
  ExtentIndex index_;
  std::map<VdiskKey, OpenContainer> open_;
  std::uint64_t next_container_ = 1;
  std::mutex coder_mu_;
  std::map<std::pair<int, int>, std::unique_ptr<Coder>> coders_;
  std::string dropped_tail_;

  std::atomic<std::uint64_t> reads_healthy_{0}, reads_degraded_{0}, reads_hedged_{0};
  mutable std::mutex rebuild_mu_;
  RebuildProgress rebuild_progress_;
  std::thread rebuild_thread_;

  // Last member: its destructor joins the workers before anything they might touch goes away.
  std::unique_ptr<IoWorkers> workers_;
};

}  // namespace v2p::ec
