// The policy host: runs the policies `v2p serve --policy FILE.so` loads. It lives in the static
// library v2p_policy_host that the v2p binary links (not in libv2p.so: it needs the vfilter and
// correlator internals, and policies never call it; they only see PolicyContext).
//
//   data path ──publish()──▶ [bounded queue, drops counted] ──▶ policy thread ─▶ HeatMap,
//                                                                               latency, on_io
//   correlator ─map_changed()─▶ [bounded queue] ───────────────▶ policy thread ─▶ map replica,
//                                                                               on_map_change
//   timer ─────────────────────────────────────────────────────▶ policy thread ─▶ on_tick
//   cache ──admit()── (its own worker thread, concurrently) ───▶ Policy::admit of each policy
//
// One policy thread calls every hook of every policy, in load order, never concurrently. The
// map a policy sees (PolicyContext::map) is the host's replica, updated on that thread from the
// correlator's change stream, so no lock is held against the correlator. A hook that throws is
// reported once and its policy unloaded; the others and the I/O go on.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "v2p/policy.hpp"
#include "v2p/records.hpp"

namespace v2p::policy {

struct PolicySpec {
  std::filesystem::path file;
  PolicyArgs args;
};

struct HostOptions {
  std::uint64_t tick_ns = 1'000'000'000;  // on_tick interval (`--policy-tick-ms`)
  std::size_t queue_capacity = 32768;     // I/O events in flight to the policy thread (2^n)
  std::uint64_t heat_extent_bytes = 1 << 20;
  std::uint64_t heat_half_life_ns = 60'000'000'000;
  double heat_prune_below = 0.01;  // forgotten extents (checked every tick)
  // Where log lines go (PolicyContext::log, load and unload reports); default stderr. Called
  // from several threads (admit() may log): must be thread-safe.
  std::function<void(std::string_view)> log;
};

struct HostStats {
  std::uint64_t events = 0;          // I/O events delivered (each to every live policy)
  std::uint64_t dropped_events = 0;  // refused by a full queue: the policies never saw them
  std::uint64_t map_changes = 0;
  std::uint64_t dropped_map_changes = 0;
  std::uint64_t ticks = 0;
  std::size_t loaded = 0;    // policies currently live
  std::size_t unloaded = 0;  // policies unloaded because a hook threw
};

class PolicyHost {
 public:
  explicit PolicyHost(HostOptions options = {});
  // Stops the thread, destroys every policy, closes the libraries.
  ~PolicyHost();
  PolicyHost(const PolicyHost&) = delete;
  PolicyHost& operator=(const PolicyHost&) = delete;

  // Mechanisms the policies may drive (PolicyContext::cache / tier). Set before load(): a policy
  // may look for them in its constructor. Not owned.
  void set_cache(CacheControl* cache) noexcept;
  void set_tier(TierControl* tier) noexcept;

  // Opens, checks and constructs one policy (before start()). Throws v2p::Error with one line.
  // Returns the policy's name().
  std::string load(const PolicySpec& spec);
  // Starts the policy thread. Without policies there is no thread and publish() is a no-op.
  void start();
  // Delivers what is queued, then joins the thread. Idempotent.
  void stop();

  // Data path, any thread, never blocks, never throws.
  void declare(const VdiskDeclaration& d);
  void publish(const ContextRecord& r) noexcept;
  // Correlator thread: one change of the V2P map.
  void map_changed(const MapChange& change) noexcept;
  // The cache's question on a read miss, from any thread: the first policy answering something
  // other than kDefault decides. Thread-safe; never blocks on the policy thread's work.
  [[nodiscard]] Admission admit(const IoEvent& miss) const noexcept;

  [[nodiscard]] HostStats stats() const noexcept;
  // Names of the live policies, in load order.
  [[nodiscard]] std::vector<std::string> policy_names() const;
  [[nodiscard]] bool empty() const noexcept;

  struct State;

 private:
  std::unique_ptr<State> s_;
};

}  // namespace v2p::policy
