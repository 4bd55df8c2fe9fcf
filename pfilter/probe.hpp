// The pfilter probe: the blockio eBPF programs loaded, attached to the block tracepoints, their
// maps pinned, and their ring buffer drained into PhysEvents. One RAII object: destroying it
// detaches the programs and removes the pins, so nothing stays behind in the kernel.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <vector>

#include "pfilter/io_stats.hpp"
#include "v2p/records.hpp"
#include "v2p/types.hpp"

namespace v2p::pfilter {

struct ProbeOptions {
  std::vector<DeviceId> devices;     // empty = all devices
  std::vector<std::uint32_t> tgids;  // empty = all processes
  // Attach the completion programs (kind 2 events with latency). Off by default: mapping needs
  // only queue and remap events, and completions add a second program call per I/O (measured in
  // docs/pfilter.md). `v2p probe` turns them on unless --no-completions.
  bool completions = false;
  bool pin = true;  // pin programs and maps under pin_dir
  std::filesystem::path pin_dir = "/sys/fs/bpf/v2p";
  std::uint32_t ring_bytes = 16u << 20;  // a power of two, at least one page
  // 0: wake the consumer as soon as an event waits (lowest latency). Otherwise only once this many
  // bytes wait (88 per event): fewer wakeups under load, at the price of events waiting up to
  // poll()'s timeout when I/O is sparse.
  std::uint32_t wakeup_bytes = 0;
  // How often poll() sends the events waiting in unfilled per-CPU batches (an IPI per CPU each
  // time; a full batch of 16 goes out at once), and so how long a sparse event waits at most.
  // Up to 8 times less often while flushes find nothing. poll(0) always flushes. At least 1.
  std::uint32_t flush_ms = 10;
  // Send every bio, as the probe did before it learned to suppress repeats: a queue (and remap)
  // event per bio. False: a bio the map already knows is counted in the kernel and not sent
  // (docs/pfilter.md, "What the probe sends"); `v2p probe` and image-only LiveChains use that.
  // The library default stays the full stream for callers written before suppression (the
  // agent's window join for opaque backends needs every untagged backend bio); they opt in.
  // Completions imply it: their join needs every queue event.
  bool every_bio = true;
  // Entries of each of the two tables that remember what was reported (8 bytes each, rounded to
  // a power of two): a working set larger than this is partly reported again, never missed.
  std::uint32_t seen_ranges = 1u << 18;
};

class Probe {
 public:
  // Throws v2p::Error with a one-line actionable reason (not root, no BTF, bpffs missing, another
  // probe owns pin_dir, load failure).
  static std::unique_ptr<Probe> attach(const ProbeOptions& options);
  ~Probe();  // detaches and unpins everything
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;

  // Waits up to timeout_ms (negative: until something arrives) and delivers every available
  // event; returns the number delivered. poll(0) is the final drain: it flushes every CPU's
  // batches first, so everything the kernel saw so far is delivered.
  // An exception thrown by on_event stops delivery and propagates; undelivered events stay queued.
  std::size_t poll(int timeout_ms, const std::function<void(const PhysEvent&)>& on_event);
  // Events the kernel dropped because the ring buffer was full, since attach.
  std::uint64_t lost_events() const;
  // Events the kernel committed to the ring buffer, since attach.
  std::uint64_t committed_events() const;
  // Queued bios whose completion cannot be reported because their entry in the (user-space)
  // join of queue and completion events was given to another bio (entries of completions never
  // seen are reused; see probe.cpp). 0 without completions.
  std::uint64_t unreported_completions() const;
  // Completions of bios that had no queue event to join: bios queued before the probe attached
  // or by processes the filter excludes, the front parts of bios the block layer split (new bios
  // that are never queued, block_split), or queue events lost. 0 without completions.
  std::uint64_t unmatched_completions() const;

  // Bios counted instead of sent because the map already knew them, since attach.
  std::uint64_t suppressed_bios() const;
  // Of those, the untagged reads and writes (never sent when suppressing: docs/pfilter.md).
  std::uint64_t untagged_bios() const;
  // I/Os whose device or vdisk found no room in the counter tables (blockio.h), since attach.
  std::uint64_t uncounted_ios() const;
  // Whether repeats are suppressed (neither every_bio nor completions).
  [[nodiscard]] bool suppressing() const noexcept;

  // The slot table (v2p_slot_table, a BPF_F_MMAPABLE array): an export publishes each slot's
  // context there (pfilter::SlotTable) so the kernel can tell a repeat of a tagged bio. The fd is
  // the probe's; dup it to hand it on (SCM_RIGHTS to an export that cannot call bpf()).
  [[nodiscard]] int slot_table_fd() const noexcept;
  // Gives the export process `tgid` a row of the slot table and returns it (the same row again
  // for a tgid that has one). Throws when all V2P_SLOT_ROWS rows are taken.
  std::uint32_t add_export(std::uint32_t tgid);
  // Frees the row of `tgid` (its exit); its entries are cleared.
  void remove_export(std::uint32_t tgid);

  // The in-kernel counters (io_stats.hpp), summed over CPUs.
  [[nodiscard]] std::vector<DeviceStats> device_stats() const;
  [[nodiscard]] std::vector<VdiskStats> vdisk_stats() const;

  // Filters can grow at run time. On a probe that filters nothing (empty list at attach) they
  // change nothing: everything already passes.
  void add_device(DeviceId d);
  void add_tgid(std::uint32_t tgid);

  // Where programs and maps are pinned, or empty when not pinned.
  [[nodiscard]] const std::filesystem::path& pin_dir() const noexcept;

  struct Impl;

 private:
  explicit Probe(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace v2p::pfilter
