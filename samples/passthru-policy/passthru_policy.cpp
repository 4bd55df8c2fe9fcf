// passthru-policy: the smallest complete v2p policy. It decides nothing: every hook is written
// out, says which thread calls it and why it is shaped the way it is, and counts what it saw so
// `v2p serve` has something to print. Start a real policy by copying this file.
//
//   v2p serve --image disk.raw --socket /tmp/s.sock
//             --policy build/libpassthru_policy.so --policy-arg report_every=10
#include <v2p/policy.hpp>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace {

class PassthruPolicy final : public v2p::Policy {
 public:
  // The constructor is the only place arguments are seen. Reject what you do not understand
  // with an exception: `v2p serve` prints its message and refuses to start, which is kinder than
  // a typo silently ignored.
  PassthruPolicy(v2p::PolicyContext& context, const v2p::PolicyArgs& args) : context_(context) {
    for (const auto& [key, value] : args) {
      if (key == "report_every") {
        report_every_ = std::stoull(value);  // throws on garbage: also a clear refusal
        if (report_every_ == 0) throw std::invalid_argument("report_every must be at least 1");
      } else {
        throw std::invalid_argument("unknown argument '" + key + "' (known: report_every)");
      }
    }
    // The context outlives the policy: keeping a reference is the intended use.
    context_.log("loaded; reporting every " + std::to_string(report_every_) + " ticks");
  }

  // The name prefixes every log line; keep it short and stable.
  [[nodiscard]] std::string_view name() const override { return "passthru"; }

  // Policy thread, once per completed guest request, after the host fed it to context.heat().
  // Must be quick (microseconds): the queue in front of it is bounded, and a slow policy loses
  // events (counted by the host) rather than slowing the guest.
  void on_io(const v2p::IoEvent& event) override {
    ++ios_;
    if (event.op == v2p::IoOp::kWrite) bytes_written_ += event.length;
  }

  // Policy thread, when the correlator saw a range placed, moved or dropped (only with the live
  // chain; plain `v2p serve` has no probe, so this never runs there). context.map() already
  // includes the change.
  void on_map_change(const v2p::MapChange& change) override {
    (void)change;
    ++map_changes_;
  }

  // Policy thread, every --policy-tick-ms: the place for periodic decisions (promotions,
  // reports), because it runs even when no I/O arrives.
  void on_tick(std::uint64_t now_ns) override {
    (void)now_ns;
    if (++ticks_ % report_every_ != 0) return;
    context_.log("saw " + std::to_string(ios_) + " requests (" + std::to_string(bytes_written_) +
                 " B written), " + std::to_string(map_changes_) + " map changes, " +
                 std::to_string(admits_.load(std::memory_order_relaxed)) + " admission questions");
  }

  // Data-path threads, concurrently, on a cache read miss (only with a cache configured). Const
  // and thread-safe: touch only immutable state or atomics, never block. kDefault leaves the
  // decision to the cache's own admission filter.
  [[nodiscard]] v2p::Admission admit(const v2p::IoEvent& miss) const override {
    (void)miss;
    admits_.fetch_add(1, std::memory_order_relaxed);
    return v2p::Admission::kDefault;
  }

 private:
  v2p::PolicyContext& context_;
  std::uint64_t report_every_ = 10;
  // Hooks other than admit() run on one thread: plain integers are enough.
  std::uint64_t ios_ = 0;
  std::uint64_t bytes_written_ = 0;
  std::uint64_t map_changes_ = 0;
  std::uint64_t ticks_ = 0;
  mutable std::atomic<std::uint64_t> admits_{0};
};

}  // namespace

// The entry points v2p looks for, stamped with the SDK ABI this file was compiled against.
V2P_POLICY(PassthruPolicy)
