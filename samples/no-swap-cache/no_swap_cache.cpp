// no-swap-cache: an admission rule. Never cache a vdisk whose name matches a `vdisk=PATTERN`
// argument (shell glob, e.g. vdisk=swap or vdisk='*-swap'): swap is written once and read at
// most once, so caching it only evicts data that would be read again.
//
//   v2p serve … --policy libno_swap_cache.so --policy-arg vdisk=swap --policy-arg vdisk='tmp*'
#include <fnmatch.h>

#include <v2p/policy.hpp>

#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

class NoSwapCache final : public v2p::Policy {
 public:
  NoSwapCache(v2p::PolicyContext& context, const v2p::PolicyArgs& args) : context_(context) {
    for (const auto& [key, value] : args) {
      if (key != "vdisk")
        throw std::invalid_argument("unknown argument '" + key + "' (known: vdisk)");
      if (value.empty()) throw std::invalid_argument("vdisk= needs a name or a glob pattern");
      patterns_.push_back(value);
    }
    if (patterns_.empty()) {
      throw std::invalid_argument("give at least one vdisk=PATTERN (the vdisks never to cache)");
    }
    if (context_.cache() == nullptr) {
      context_.log("no cache configured for this server: the rule is loaded but has no effect");
    }
  }

  [[nodiscard]] std::string_view name() const override { return "no-swap-cache"; }

  // Data-path threads, concurrently: patterns_ never changes after the constructor, so reading
  // it needs no lock; the counter is atomic. fnmatch wants a terminated string: the name is
  // copied to the stack, not the heap, to keep the miss path free of allocations.
  [[nodiscard]] v2p::Admission admit(const v2p::IoEvent& miss) const override {
    char name[256];
    if (miss.vdisk_name.size() >= sizeof name) return v2p::Admission::kDefault;
    miss.vdisk_name.copy(name, miss.vdisk_name.size());
    name[miss.vdisk_name.size()] = '\0';
    for (const auto& p : patterns_) {
      if (::fnmatch(p.c_str(), name, 0) == 0) {
        bypassed_.fetch_add(1, std::memory_order_relaxed);
        return v2p::Admission::kBypass;
      }
    }
    return v2p::Admission::kDefault;  // not ours to decide: the cache's own filter does
  }

  // Policy thread: report what the rule did since the last tick, only when it did something.
  void on_tick(std::uint64_t now_ns) override {
    (void)now_ns;
    const auto n = bypassed_.exchange(0, std::memory_order_relaxed);
    if (n != 0) context_.log("kept " + std::to_string(n) + " read misses out of the cache");
  }

 private:
  v2p::PolicyContext& context_;
  std::vector<std::string> patterns_;
  mutable std::atomic<std::uint64_t> bypassed_{0};
};

}  // namespace

V2P_POLICY(NoSwapCache)
