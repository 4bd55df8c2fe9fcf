// The completion-window join for opaque backends (e.g. qemu-storage-daemon doing the file I/O of
// a qcow2 vdisk in its own threads): its bios carry no tag, so each is assigned to one of the
// untagged requests whose [submit, complete] window contains it. Bios wait window_settle_ns so
// that every request that could contain them has completed and been published.
//
// Confidence: the true request is always among the candidates, and the choice among them is
// uniform, so an assignment is right with probability 1 / candidates. When the map already
// places one candidate's bytes exactly where the bio went, that candidate is chosen and the
// assignment is as good as the mapping it confirms (its confidence is kept).
//
// What is not data is kept out before that (docs/correlator.md, "Backend metadata"): REQ_META
// and empty bios never reach this join (Correlator::on_event counts them as metadata), and a
// request whose bytes are already all accounted for by certain assignments (it was the only
// candidate) is no candidate for another bio: a request's data bios add up to its length, so
// the surplus in its window is the backend's own I/O.
//
// A bio shorter than its request (one of several) is placed at the request's offset plus the
// bytes of the request's earlier bios. That offset is only known when every earlier bio of the
// request was assigned with certainty; otherwise the bio is not placed (unplaced_window) unless
// the map confirms it. A bio as long as its request needs no such offset.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "correlator/bio.hpp"
#include "correlator/correlator.hpp"
#include "correlator/map_changes.hpp"
#include "correlator/trim_log.hpp"

namespace v2p::correlator {

class WindowJoin {
 public:
  WindowJoin(MapWriter& map, Stats& stats, const TrimLog& trims, const Options& options)
      : map_(map), stats_(stats), trims_(trims), opts_(options), rng_(options.seed) {}

  void add_backend(std::uint32_t tgid);
  [[nodiscard]] bool is_backend(std::uint32_t tgid) const noexcept;
  [[nodiscard]] const std::vector<std::uint32_t>& backends() const noexcept { return backends_; }
  void on_event(std::uint32_t tgid, const Bio& b);
  void on_record(const ContextRecord& r);
  void advance(std::uint64_t now_ns);
  void drain();
  void set_observer(std::function<void(const WindowDecision&)> f) { observer_ = std::move(f); }
  [[nodiscard]] std::uint64_t pending_records() const noexcept { return records_.size(); }
  [[nodiscard]] std::uint64_t pending_events() const noexcept { return events_.size(); }

 private:
  struct Candidate {
    ContextRecord rec;
    std::uint64_t consumed = 0;  // bytes of bios assigned so far
    std::uint64_t certain = 0;   // of those, bytes assigned as the only candidate
    // A bio in this request's window had several candidates: this request may have lost one of
    // its bios or gained another's, so the offsets of its later partial bios are unknown.
    bool tainted = false;
    // Bytes of the bios in its window that no other request could own (it was their only
    // candidate, capacity aside). More than its length means the backend did I/O of its own in
    // the window (an unflagged qcow2 table write): which of those bios are data is unknown.
    std::uint64_t exclusive = 0;
  };
  struct Pending {
    std::uint32_t tgid;
    Bio bio;
    bool counted = false;  // its bytes are in the exclusive count of its only candidate
  };

  // Requests whose window could hold the bio (window, direction, size, process), capacity aside.
  bool could_own(const Candidate& c, const Pending& p) const noexcept;
  void assign(const Pending& p);

  MapWriter& map_;
  Stats& stats_;
  const TrimLog& trims_;
  const Options& opts_;
  std::mt19937_64 rng_;
  std::vector<std::uint32_t> backends_;
  std::vector<Candidate> records_;
  std::vector<Pending> events_;
  std::vector<std::size_t> cands_, consistent_;
  std::function<void(const WindowDecision&)> observer_;
};

}  // namespace v2p::correlator
