// heat-reporter: every N ticks, one line per VM with its total heat and its hottest extents,
// read from the HeatMap the host keeps (PolicyContext::heat). Shows how a policy reads the
// host's statistics instead of keeping its own.
//
//   v2p serve … --policy libheat_reporter.so --policy-arg every=10 --policy-arg top=3
#include <v2p/heat.hpp>
#include <v2p/policy.hpp>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

std::uint64_t positive(const std::string& key, const std::string& value) {
  std::size_t used = 0;
  const auto n = std::stoull(value, &used);
  if (used != value.size() || n == 0) {
    throw std::invalid_argument(key + " must be a positive integer, not '" + value + "'");
  }
  return n;
}

class HeatReporter final : public v2p::Policy {
 public:
  HeatReporter(v2p::PolicyContext& context, const v2p::PolicyArgs& args) : context_(context) {
    for (const auto& [key, value] : args) {
      if (key == "every") {
        every_ = positive(key, value);
      } else if (key == "top") {
        top_ = positive(key, value);
      } else {
        throw std::invalid_argument("unknown argument '" + key + "' (known: every, top)");
      }
    }
  }

  [[nodiscard]] std::string_view name() const override { return "heat-reporter"; }

  // The HeatMap is keyed by vdisk; which VMs exist is learnt from the I/O itself.
  void on_io(const v2p::IoEvent& event) override { vdisks_.insert(event.vdisk); }

  void on_tick(std::uint64_t now_ns) override {
    if (++ticks_ % every_ != 0) return;
    const v2p::HeatMap& heat = context_.heat();
    std::map<v2p::VmId, std::set<v2p::VdiskKey>> per_vm;
    for (const auto& k : vdisks_) per_vm[k.vm].insert(k);
    for (const auto& [vm, keys] : per_vm) {
      double total = 0;
      std::vector<v2p::HotExtent> hottest;
      for (const auto& k : keys) {
        total += heat.vdisk_heat(k, now_ns);
        for (const auto& h : heat.hottest(k, top_, now_ns)) hottest.push_back(h);
      }
      // Hottest of the VM's vdisks together, hottest first (each vdisk gave its own top N).
      std::sort(hottest.begin(), hottest.end(),
                [](const auto& a, const auto& b) { return a.heat > b.heat; });
      if (hottest.size() > top_) hottest.resize(top_);
      std::string vm_name = context_.vm_name(vm);
      if (vm_name.empty()) vm_name = "vm#" + std::to_string(vm.value());
      std::string line = "heat " + vm_name + ": total " + format(total) + ", hottest";
      if (hottest.empty()) line += " (none: the working set cooled down)";
      for (const auto& h : hottest) {
        const std::uint64_t mib = h.extent.index * heat.extent_bytes() >> 20;
        // Appends, not `" " + name + …`: g++ 12 -O3 misreads that temporary (-Wrestrict, PR105329).
        line += ' ';
        line += context_.vdisk_name(h.extent.vdisk);
        line += '@';
        line += std::to_string(mib);
        line += "MiB=";
        line += format(h.heat);
      }
      context_.log(line);
    }
  }

 private:
  static std::string format(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f", v);
    return buf;
  }

  v2p::PolicyContext& context_;
  std::uint64_t every_ = 10;
  std::size_t top_ = 5;
  std::uint64_t ticks_ = 0;
  std::set<v2p::VdiskKey> vdisks_;
};

}  // namespace

V2P_POLICY(HeatReporter)
