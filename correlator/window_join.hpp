// The completion-window join for opaque backends (e.g. qemu-storage-daemon doing the file I/O of
// a qcow2 vdisk in its own threads): its bios carry no tag, so each is assigned to one of the
// untagged requests whose [submit, complete] window contains it. Bios wait window_settle_ns so
// that every request that could contain them has completed and been published.
//
// Confidence: the true request is always among the candidates, and the choice among them is
// uniform, so an assignment is right with probability 1 / candidates. When the map already
// places one candidate's bytes exactly where the bio went, that candidate is chosen and the
// assignment is as good as the mapping it confirms (its confidence is kept).
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "correlator/bio.hpp"
#include "correlator/correlator.hpp"
#include "correlator/trim_log.hpp"

namespace v2p::correlator {

class WindowJoin {
 public:
  WindowJoin(V2PMap& map, Stats& stats, const TrimLog& trims, const Options& options)
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
  };
  struct Pending {
    std::uint32_t tgid;
    Bio bio;
  };

  void assign(const Pending& p);

  V2PMap& map_;
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
