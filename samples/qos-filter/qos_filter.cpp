// The QoS filter: per-VM IOPS and bandwidth limits (the VAIO QoS class). Every VM gets its own
// budget, shared by all its vdisks; a request over budget waits on its worker thread, which is
// allowed (data hooks may block) and holds back only that VM's queue.
//
//   v2p serve --config vms.json --filter libqos_filter.so --filter-arg iops=500
//             --filter-arg bandwidth=50M
//
// Pacing is GCRA (the "virtual scheduling" form of a token bucket): each VM keeps the time its
// next request may start; a request starts at max(now, that time) and pushes it forward by its
// cost. No timer thread, one lock per request, exact long-run rates.
#include <v2p/filter.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

namespace {

using Clock = std::chrono::steady_clock;

// "500", "64k", "50M", "1G" (powers of 1024); throws naming the argument.
std::uint64_t parse_amount(const std::string& key, const std::string& text) {
  std::size_t used = 0;
  std::uint64_t n = 0;
  try {
    n = std::stoull(text, &used);
  } catch (const std::exception&) {
    throw std::invalid_argument(key + "='" + text + "': expected a number such as 500 or 50M");
  }
  const std::string unit = text.substr(used);
  if (unit == "k" || unit == "K") return n << 10;
  if (unit == "m" || unit == "M") return n << 20;
  if (unit == "g" || unit == "G") return n << 30;
  if (!unit.empty()) throw std::invalid_argument(key + "='" + text + "': unknown unit " + unit);
  return n;
}

class QosFilter final : public v2p::Filter {
 public:
  QosFilter(v2p::FilterContext& context, const v2p::FilterArgs& args) : context_(context) {
    for (const auto& [key, value] : args) {
      if (key == "iops") {
        iops_ = parse_amount(key, value);
      } else if (key == "bandwidth") {
        bytes_per_s_ = parse_amount(key, value);
      } else {
        throw std::invalid_argument("unknown argument '" + key + "' (known: iops, bandwidth)");
      }
    }
    if (iops_ == 0 && bytes_per_s_ == 0) {
      throw std::invalid_argument("give iops=N and/or bandwidth=BYTES (per second, per VM)");
    }
  }

  std::string_view name() const override { return "qos"; }
  // Limits apply to what the guest asked for, before any filter below copies or splits it.
  v2p::FilterClass filter_class() const override { return v2p::FilterClass::kQos; }

  int read(v2p::Next& next, v2p::VdiskState*, const v2p::RequestContext& ctx,
           std::span<std::byte> out, std::uint64_t offset) override {
    pace(ctx.vm, out.size());
    return next.read(ctx, out, offset);
  }
  int write(v2p::Next& next, v2p::VdiskState*, const v2p::RequestContext& ctx,
            std::span<const std::byte> data, std::uint64_t offset, v2p::Fua fua) override {
    pace(ctx.vm, data.size());
    return next.write(ctx, data, offset, fua);
  }
  // Zeroing and trimming move no data through the guest's link: they count as operations only.
  int zero(v2p::Next& next, v2p::VdiskState*, const v2p::RequestContext& ctx, std::uint64_t offset,
           std::uint64_t length, v2p::MayPunch may_punch, v2p::Fua fua) override {
    pace(ctx.vm, 0);
    return next.zero(ctx, offset, length, may_punch, fua);
  }
  int trim(v2p::Next& next, v2p::VdiskState*, const v2p::RequestContext& ctx, std::uint64_t offset,
           std::uint64_t length) override {
    pace(ctx.vm, 0);
    return next.trim(ctx, offset, length);
  }

  // The summary goes out once per vdisk close; the budgets are per VM, so it names VMs.
  void close(v2p::VdiskState*, v2p::Next&) override {
    std::lock_guard lock(mu_);
    for (const auto& [vm, b] : vms_) {
      context_.log("vm " + (vm.empty() ? std::string("<unnamed>") : vm) + ": " +
                   std::to_string(b.requests) + " requests, " + std::to_string(b.delayed) +
                   " delayed, " + std::to_string(b.waited.count() / 1'000'000) + " ms waited");
    }
  }

 private:
  struct Budget {
    Clock::time_point next_start{};
    std::uint64_t requests = 0, delayed = 0;
    std::chrono::nanoseconds waited{0};
  };

  void pace(std::string_view vm, std::uint64_t bytes) {
    using std::chrono::nanoseconds;
    nanoseconds cost{0};
    if (iops_ != 0) cost = std::max(cost, nanoseconds(1'000'000'000 / iops_));
    if (bytes_per_s_ != 0) {
      cost = std::max(cost, nanoseconds(bytes * 1'000'000'000 / bytes_per_s_));
    }
    Clock::time_point start;
    {
      std::lock_guard lock(mu_);
      Budget& b = vms_[std::string(vm)];
      const auto now = Clock::now();
      start = std::max(now, b.next_start);
      b.next_start = start + cost;
      ++b.requests;
      if (start > now) {
        ++b.delayed;
        b.waited += start - now;
      }
    }
    std::this_thread::sleep_until(start);  // outside the lock: other VMs are not held back
  }

  v2p::FilterContext& context_;
  std::uint64_t iops_ = 0;
  std::uint64_t bytes_per_s_ = 0;
  std::mutex mu_;
  std::map<std::string, Budget, std::less<>> vms_;
};

}  // namespace

V2P_FILTER(QosFilter)
