// The correlator joins the vfilter's ContextRecords with the pfilter's PhysEvents into the V2P
// map. Two joins (docs/correlator.md has the long form):
//  - exact, by tag: a bio carrying slot s from process t at time ts belongs to the one request of
//    (t, s) whose [submit_ns, complete_ns] window contains ts. Its voffset is the request's
//    voffset plus the bytes of the request's earlier bios (ordered by ts). Confidence 1.
//  - completion window, for opaque backends (add_backend_process): an untagged bio of a backend
//    process is assigned to one of the untagged requests whose window contains it, preferring
//    those the map already places there; confidence = 1 / number of candidates.
// Untagged I/O of any other process (journal, metadata, other programs) is counted as
// unattributed and never enters the map.
//
// Thread-compatible: one thread feeds it (the caller serialises on_* / advance and queries).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "correlator/map_changes.hpp"
#include "v2p/map.hpp"
#include "v2p/records.hpp"

namespace v2p::correlator {

inline constexpr std::uint64_t kDefaultHorizonNs = 2'000'000'000;

struct Options {
  // Unmatched events and requests still short of bios are given up after this long.
  std::uint64_t horizon_ns = kDefaultHorizonNs;
  // Backend (completion-window) events wait this long for every request whose window could
  // contain them to complete and be published.
  std::uint64_t window_settle_ns = 250'000'000;
  // How far out of time order the event stream may deliver bios. Once a bio newer than a
  // request's completion plus this has arrived, every bio of that request has: a request still
  // short of bytes then (a read over holes) is finished without waiting for the horizon. The
  // probe sends events in per-CPU batches, so one CPU's bios can come up to about 8 flush
  // intervals (80 ms) after another's newer ones (docs/pfilter.md).
  std::uint64_t event_reorder_ns = 250'000'000;
  // Seed of the tie-break among equally likely window candidates (kept fixed for replays).
  std::uint64_t seed = 1;
};

struct Stats {
  std::uint64_t records = 0;        // ContextRecords received
  std::uint64_t events = 0;         // queue (bio submission) events received
  std::uint64_t joined_exact = 0;   // bios joined by tag
  std::uint64_t joined_window = 0;  // bios joined by completion window
  std::uint64_t unattributed = 0;   // bios owned by no request (journal, metadata, others)
  // Of those, bios of a tagged request or a backend process that are file-system metadata
  // (REQ_META) or empty (flush): never a request's data, never in the map.
  std::uint64_t metadata = 0;
  std::uint64_t pending_records = 0;      // requests waiting for bios
  std::uint64_t pending_events = 0;       // bios waiting for a request
  std::uint64_t lost_events = 0;          // dropped by the kernel ring buffer (from on_lost)
  std::uint64_t other_events = 0;         // remap/complete events (not used for mapping)
  std::uint64_t incomplete_requests = 0;  // a write whose bios never added up: not mapped
  std::uint64_t ambiguous_reads = 0;      // a read partly over holes: bios cannot be placed
  std::uint64_t trims = 0;                // discard / write-zeroes requests that unmapped a range
  std::uint64_t placed_requests = 0;      // tagged requests whose bios entered the map
  // Backend bios shorter than their request whose offset in it could not be known (the request
  // had uncertain earlier bios): not placed, also counted in unattributed.
  std::uint64_t unplaced_window = 0;
};

// One completion-window assignment: what tests use to check calibration.
struct WindowDecision {
  VdiskKey vdisk;
  Mapping mapping;
  std::uint32_t candidates = 0;  // requests whose window contained the bio
  bool consistent = false;       // chosen because the map already placed it there
  float confidence = 0;          // probability this assignment is right
  std::uint64_t event_ts = 0;
};

class Correlator {
 public:
  explicit Correlator(Options options = {});
  ~Correlator();
  Correlator(const Correlator&) = delete;
  Correlator& operator=(const Correlator&) = delete;

  void declare(const VdiskDeclaration& d);
  // Untagged bios of this process are joined by completion window (opaque upstream backend).
  void add_backend_process(std::uint32_t tgid);
  void on_record(const ContextRecord& r);
  void on_event(const PhysEvent& e);
  // lost_total is cumulative, as the probe reports it.
  void on_lost(std::uint64_t lost_total);
  // Finishes joins whose windows closed and expires what waited longer than the horizon.
  // now_ns is CLOCK_MONOTONIC (or the replayed stream's time).
  void advance(std::uint64_t now_ns);
  // End of input: finishes every pending join as if the horizon had passed.
  void drain();

  const V2PMap& map() const;
  // For restoring a snapshot before replaying more stream.
  V2PMap& mutable_map();
  Stats stats() const;
  std::optional<VdiskDeclaration> vdisk(VdiskKey key) const;
  std::vector<VdiskDeclaration> vdisk_declarations() const;
  std::vector<std::uint32_t> backend_processes() const;
  // The newest time (record completion or bio submission) the correlator has been fed: a
  // snapshot taken now covers the streams up to here.
  std::uint64_t watermark_ns() const;
  // Restores the watermark of a loaded snapshot.
  void set_watermark_ns(std::uint64_t ns);

  // Called for every completion-window assignment (tests, audit logs).
  void set_window_observer(std::function<void(const WindowDecision&)> observer);
  // Called for every change of the map, synchronously, from the thread feeding the correlator
  // (see map_changes.hpp for what is reported). Empty = none (the default, no cost).
  void set_change_observer(MapChangeObserver observer);

  struct State;

 private:
  std::unique_ptr<State> s_;
};

}  // namespace v2p::correlator
