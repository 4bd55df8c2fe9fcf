#include "policy/host/policy_host.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include "common/clock.hpp"
#include "common/error.hpp"
#include "policy/host/bounded_queue.hpp"
#include "policy/host/policy_library.hpp"

namespace v2p::policy {
namespace {

// Map changes come from the correlator thread, not the data path; the bound only keeps a
// stalled policy thread from growing memory without end.
constexpr std::size_t kMaxQueuedMapChanges = 1 << 20;
// Records the policy thread takes per round before it looks at map changes and the clock again.
constexpr std::size_t kRecordBatch = 4096;
// How long the idle policy thread sleeps: the latency from a completion to on_io when idle.
constexpr auto kIdleWait = std::chrono::milliseconds(2);

}  // namespace

namespace detail {

class HostContext;

// One loaded policy. `policy` is only written under the exclusive slots lock (unload).
struct Slot {
  std::unique_ptr<PolicyLibrary> lib;
  std::unique_ptr<HostContext> context;
  Policy* policy = nullptr;
  std::string name;
  // admit() threw on some data-path thread: the policy thread unloads it.
  std::atomic<bool> admit_failed{false};
  std::mutex why_mu;
  std::string admit_why;
};

}  // namespace detail

using detail::HostContext;
using detail::Slot;

struct PolicyHost::State {
  explicit State(HostOptions o)
      : opts(std::move(o)),
        records(opts.queue_capacity),
        heat(opts.heat_extent_bytes, opts.heat_half_life_ns) {
    if (!opts.log) {
      opts.log = [](std::string_view line) {
        std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data());
      };
    }
    if (opts.tick_ns == 0) throw Error("the policy tick interval must be at least 1 ms");
  }

  HostOptions opts;
  BoundedQueue<ContextRecord> records;
  std::atomic<std::uint64_t> dropped_events{0};
  std::mutex changes_mu;
  std::deque<MapChange> changes;
  std::atomic<std::uint64_t> dropped_map_changes{0};

  // Policy-thread state (PolicyContext::map and ::heat read it inside hooks).
  V2PMap map;
  HeatMap heat;
  std::atomic<std::uint64_t> events{0}, map_changes{0}, ticks{0};
  std::atomic<std::size_t> unloaded{0};

  mutable std::mutex latency_mu;
  std::unordered_map<VdiskKey, LatencyHistogram> latency;

  // Names: nodes are never replaced, so views into them stay valid (IoEvent carries views).
  mutable std::mutex names_mu;
  std::map<VdiskKey, std::pair<std::string, std::string>> vdisk_names;
  std::map<VmId, std::string> vm_names;

  mutable std::shared_mutex slots_mu;
  std::vector<std::unique_ptr<Slot>> slots;

  std::atomic<CacheControl*> cache{nullptr};
  std::atomic<TierControl*> tier{nullptr};

  std::thread thread;
  // Set while the thread runs: publish() and map_changed() read it from other threads, which
  // must not touch `thread` itself.
  std::atomic<bool> running{false};
  std::atomic<bool> stopping{false};
  std::mutex wake_mu;
  std::condition_variable wake_cv;

  void log(std::string_view line) {
    try {
      opts.log(line);
    } catch (...) {  // a log sink that fails must not take the policy thread with it
    }
  }

  void run();
  std::size_t drain_changes();
  std::size_t drain_records();
  void tick(std::uint64_t now);
  void reap_failed_admits();
  IoEvent to_event(const ContextRecord& r);
  void unload(Slot& slot, std::string_view hook, std::string_view why);

  template <class Hook>
  void deliver(std::string_view hook, Hook&& call) {
    // Unloading needs the exclusive lock, which admit()'s readers may hold; the policy thread is
    // the only writer, so reading `policy` here without the lock is race-free.
    for (auto& slot : slots) {
      if (slot->policy == nullptr) continue;
      try {
        call(*slot->policy);
      } catch (const std::exception& e) {
        unload(*slot, hook, e.what());
      } catch (...) {
        unload(*slot, hook, "an exception that is not a std::exception");
      }
    }
  }
};

namespace detail {

class HostContext final : public PolicyContext {
 public:
  HostContext(PolicyHost::State& s, std::string label) : s_(s), label_(std::move(label)) {}
  void set_label(std::string label) { label_ = std::move(label); }

  const V2PMap& map() const override { return s_.map; }
  const HeatMap& heat() const override { return s_.heat; }
  LatencyHistogram latency(VdiskKey vdisk) const override {
    const std::lock_guard lk(s_.latency_mu);
    const auto it = s_.latency.find(vdisk);
    return it == s_.latency.end() ? LatencyHistogram{} : it->second;
  }
  std::string vm_name(VmId vm) const override {
    const std::lock_guard lk(s_.names_mu);
    const auto it = s_.vm_names.find(vm);
    return it == s_.vm_names.end() ? std::string{} : it->second;
  }
  std::string vdisk_name(VdiskKey vdisk) const override {
    const std::lock_guard lk(s_.names_mu);
    const auto it = s_.vdisk_names.find(vdisk);
    return it == s_.vdisk_names.end() ? std::string{} : it->second.second;
  }
  CacheControl* cache() override { return s_.cache.load(); }
  TierControl* tier() override { return s_.tier.load(); }
  void log(std::string_view line) override { s_.log(fmt::format("policy {}: {}", label_, line)); }

 private:
  PolicyHost::State& s_;
  std::string label_;
};

}  // namespace detail

namespace {

IoOp to_op(std::uint8_t op) noexcept {
  return op <= static_cast<std::uint8_t>(IoOp::kOther) ? static_cast<IoOp>(op) : IoOp::kOther;
}

// Reads, writes and write-zeroes are accesses to data; flush and discard are not.
bool heats(const IoEvent& e) noexcept {
  return e.result == 0 && e.length != 0 &&
         (e.op == IoOp::kRead || e.op == IoOp::kWrite || e.op == IoOp::kWriteZeroes);
}

}  // namespace

void PolicyHost::State::unload(Slot& slot, std::string_view hook, std::string_view why) {
  Policy* p = nullptr;
  {
    const std::unique_lock lk(slots_mu);
    p = std::exchange(slot.policy, nullptr);
  }
  if (p == nullptr) return;
  log(fmt::format("policy {} ({}) threw from {}: {}; unloaded, serving goes on", slot.name,
                  slot.lib->file().filename().string(), hook, why));
  slot.lib->destroy(p);
  ++unloaded;
}

void PolicyHost::State::reap_failed_admits() {
  for (auto& slot : slots) {
    if (slot->policy == nullptr || !slot->admit_failed.load(std::memory_order_acquire)) continue;
    std::string why;
    {
      const std::lock_guard lk(slot->why_mu);
      why = slot->admit_why;
    }
    unload(*slot, "admit", why);
  }
}

IoEvent PolicyHost::State::to_event(const ContextRecord& r) {
  IoEvent e;
  e.vdisk = r.key();
  {
    const std::lock_guard lk(names_mu);
    if (const auto it = vdisk_names.find(e.vdisk); it != vdisk_names.end()) {
      e.vm_name = it->second.first;
      e.vdisk_name = it->second.second;
    }
  }
  e.op = to_op(r.op);
  e.voffset = r.offset();
  e.length = r.length;
  e.time_ns = r.complete_ns;
  e.latency_ns = r.complete_ns >= r.submit_ns ? r.complete_ns - r.submit_ns : 0;
  e.result = r.result;
  if (const auto m = map.find(e.vdisk, e.voffset)) {
    e.has_physical = true;
    e.device = m->device;
    e.sector =
        PhysicalSector{m->sector.value() + (e.voffset.value() - m->voffset.value()) / kSectorSize};
  }
  return e;
}

std::size_t PolicyHost::State::drain_changes() {
  std::deque<MapChange> batch;
  {
    const std::lock_guard lk(changes_mu);
    batch.swap(changes);
  }
  for (const auto& c : batch) {
    // The replica first, so a policy looking at map() inside on_map_change sees the change.
    if (c.kind == MapChangeKind::kUnmapped) {
      map.unmap(c.vdisk, c.voffset, c.length);
    } else {
      map.map(c.vdisk, Mapping{c.voffset, c.length, c.device, c.sector, monotonic_ns(), 1.0F});
    }
    ++map_changes;
    deliver("on_map_change", [&](Policy& p) { p.on_map_change(c); });
  }
  return batch.size();
}

std::size_t PolicyHost::State::drain_records() {
  std::size_t n = 0;
  for (; n < kRecordBatch; ++n) {
    const auto r = records.try_pop();
    if (!r) break;
    const IoEvent e = to_event(*r);
    if (heats(e)) heat.add(e.vdisk, e.voffset, e.length, e.time_ns);
    {
      const std::lock_guard lk(latency_mu);
      latency[e.vdisk].record(e.latency_ns);
    }
    ++events;
    deliver("on_io", [&](Policy& p) { p.on_io(e); });
  }
  return n;
}

void PolicyHost::State::tick(std::uint64_t now) {
  heat.prune(now, opts.heat_prune_below);
  ++ticks;
  deliver("on_tick", [&](Policy& p) { p.on_tick(now); });
}

void PolicyHost::State::run() {
  std::uint64_t next_tick = monotonic_ns() + opts.tick_ns;
  for (;;) {
    const bool last_round = stopping.load(std::memory_order_acquire);
    reap_failed_admits();
    std::size_t work = drain_changes();
    work += drain_records();
    const std::uint64_t now = monotonic_ns();
    if (now >= next_tick) {
      tick(now);
      next_tick += opts.tick_ns;
      if (next_tick <= now) next_tick = now + opts.tick_ns;  // fell behind: skip, do not burst
    }
    if (last_round && work == 0) return;  // everything queued before stop() was delivered
    if (work == 0) {
      std::unique_lock lk(wake_mu);
      const auto until_tick = std::chrono::nanoseconds(next_tick - std::min(next_tick, now));
      wake_cv.wait_for(lk, std::min<std::chrono::nanoseconds>(kIdleWait, until_tick),
                       [&] { return stopping.load(); });
    }
  }
}

PolicyHost::PolicyHost(HostOptions options) : s_(std::make_unique<State>(std::move(options))) {}

PolicyHost::~PolicyHost() {
  stop();
  // Policies before their libraries: the destructor's code lives in the library.
  for (auto& slot : s_->slots) {
    if (slot->policy != nullptr) slot->lib->destroy(std::exchange(slot->policy, nullptr));
  }
  s_->slots.clear();
}

void PolicyHost::set_cache(CacheControl* cache) noexcept {
  s_->cache.store(cache);
}
void PolicyHost::set_tier(TierControl* tier) noexcept {
  s_->tier.store(tier);
}

std::string PolicyHost::load(const PolicySpec& spec) {
  if (s_->thread.joinable()) throw Error("policies are loaded before the policy host starts");
  auto slot = std::make_unique<Slot>();
  slot->lib = PolicyLibrary::open(spec.file);
  slot->context = std::make_unique<HostContext>(*s_, spec.file.filename().string());
  slot->policy = slot->lib->create(*slot->context, spec.args);
  try {
    slot->name = std::string(slot->policy->name());
  } catch (const std::exception& e) {
    slot->lib->destroy(std::exchange(slot->policy, nullptr));
    throw Error(
        fmt::format("policy {}: name() threw: {}", spec.file.filename().string(), e.what()));
  }
  slot->context->set_label(slot->name);
  std::string name = slot->name;
  const std::unique_lock lk(s_->slots_mu);
  s_->slots.push_back(std::move(slot));
  return name;
}

void PolicyHost::start() {
  if (s_->thread.joinable() || s_->slots.empty()) return;
  s_->stopping = false;
  s_->thread = std::thread([this] { s_->run(); });
  s_->running.store(true, std::memory_order_release);
}

void PolicyHost::stop() {
  if (!s_->thread.joinable()) return;
  s_->running.store(false, std::memory_order_release);  // later records are not queued
  {
    const std::lock_guard lk(s_->wake_mu);
    s_->stopping = true;
  }
  s_->wake_cv.notify_all();
  s_->thread.join();
}

void PolicyHost::declare(const VdiskDeclaration& d) {
  const std::lock_guard lk(s_->names_mu);
  s_->vdisk_names.try_emplace(VdiskKey{VmId{d.vm_id}, VdiskId{d.vdisk_id}}, d.vm_name,
                              d.vdisk_name);
  s_->vm_names.try_emplace(VmId{d.vm_id}, d.vm_name);
}

void PolicyHost::publish(const ContextRecord& r) noexcept {
  if (!s_->running.load(std::memory_order_acquire)) return;
  if (!s_->records.try_push(r)) s_->dropped_events.fetch_add(1, std::memory_order_relaxed);
}

void PolicyHost::map_changed(const MapChange& change) noexcept {
  if (!s_->running.load(std::memory_order_acquire)) return;
  try {
    const std::lock_guard lk(s_->changes_mu);
    if (s_->changes.size() >= kMaxQueuedMapChanges) {
      ++s_->dropped_map_changes;
      return;
    }
    s_->changes.push_back(change);
  } catch (...) {  // allocation failure: counted like a full queue
    ++s_->dropped_map_changes;
  }
}

Admission PolicyHost::admit(const IoEvent& miss) const noexcept {
  const std::shared_lock lk(s_->slots_mu);
  for (const auto& slot : s_->slots) {
    if (slot->policy == nullptr || slot->admit_failed.load(std::memory_order_relaxed)) continue;
    try {
      const Admission a = slot->policy->admit(miss);
      if (a != Admission::kDefault) return a;
    } catch (const std::exception& e) {
      if (!slot->admit_failed.exchange(true)) {
        const std::lock_guard why(slot->why_mu);
        slot->admit_why = e.what();
      }
    } catch (...) {
      if (!slot->admit_failed.exchange(true)) {
        const std::lock_guard why(slot->why_mu);
        slot->admit_why = "an exception that is not a std::exception";
      }
    }
  }
  return Admission::kDefault;
}

HostStats PolicyHost::stats() const noexcept {
  HostStats st;
  st.events = s_->events.load();
  st.dropped_events = s_->dropped_events.load();
  st.map_changes = s_->map_changes.load();
  st.dropped_map_changes = s_->dropped_map_changes.load();
  st.ticks = s_->ticks.load();
  st.unloaded = s_->unloaded.load();
  const std::shared_lock lk(s_->slots_mu);
  for (const auto& slot : s_->slots) st.loaded += slot->policy != nullptr ? 1 : 0;
  return st;
}

std::vector<std::string> PolicyHost::policy_names() const {
  std::vector<std::string> out;
  const std::shared_lock lk(s_->slots_mu);
  for (const auto& slot : s_->slots) {
    if (slot->policy != nullptr) out.push_back(slot->name);
  }
  return out;
}

bool PolicyHost::empty() const noexcept {
  const std::shared_lock lk(s_->slots_mu);
  return s_->slots.empty();
}

}  // namespace v2p::policy
