// The passthru filter: the smallest complete v2p filter, written as the tutorial
// (docs/sdk.md, "Writing a filter"). It forwards every request unchanged and counts, per vdisk,
// what went through it. Copy it to start your own.
//
//   v2p serve --image disk.raw --socket /run/v2p/vm1.sock --filter libpassthru_filter.so
#include <v2p/filter.hpp>

#include <atomic>
#include <stdexcept>
#include <string>

namespace {

// Per-vdisk state. One Filter object serves every vdisk of the export, concurrently, so
// anything that belongs to one vdisk lives here, not in the filter. Atomics, because the data
// hooks of one vdisk run on several worker threads at once.
struct Counts final : v2p::VdiskState {
  std::string vdisk;
  std::atomic<std::uint64_t> reads{0}, writes{0}, bytes{0};
};

class PassthruFilter final : public v2p::Filter {
 public:
  // Arguments are checked here, once, so a typo stops `v2p serve` with a sentence instead of
  // surfacing as odd behaviour later. This filter takes none.
  PassthruFilter(v2p::FilterContext& context, const v2p::FilterArgs& args) : context_(context) {
    if (!args.empty()) {
      throw std::invalid_argument("unknown argument '" + args.front().first +
                                  "' (passthru takes none)");
    }
  }

  std::string_view name() const override { return "passthru"; }
  // Inspection filters sit nearest the guest: they see the guest's requests before any other
  // filter changes them. (The default; written out because choosing it is the point.)
  v2p::FilterClass filter_class() const override { return v2p::FilterClass::kInspection; }

  // open/close run off the data path: the place for allocation and for anything that blocks
  // for long (opening a second file, replaying a journal).
  std::unique_ptr<v2p::VdiskState> open(const v2p::VdiskInfo& vdisk, v2p::Next&) override {
    auto counts = std::make_unique<Counts>();
    counts->vdisk = std::string(vdisk.vdisk);
    return counts;
  }
  void close(v2p::VdiskState* state, v2p::Next&) override {
    const auto& c = v2p::state_as<Counts>(state);
    context_.log("vdisk " + c.vdisk + ": " + std::to_string(c.reads.load()) + " reads, " +
                 std::to_string(c.writes.load()) + " writes, " + std::to_string(c.bytes.load()) +
                 " B");
  }

  // Each data hook forwards explicitly through `next`: a filter that changes data or offsets
  // would do it here. Forwarding on the calling thread matters: that thread runs under the
  // request's tag, so the host I/O below stays attributed to the guest request. The result of
  // `next` (0 or -errno) goes back unchanged so the client sees the real error.
  int read(v2p::Next& next, v2p::VdiskState* state, const v2p::RequestContext& ctx,
           std::span<std::byte> out, std::uint64_t offset) override {
    auto& c = v2p::state_as<Counts>(state);
    c.reads.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic orders nothing
    c.bytes.fetch_add(out.size(), std::memory_order_relaxed);
    return next.read(ctx, out, offset);
  }
  int write(v2p::Next& next, v2p::VdiskState* state, const v2p::RequestContext& ctx,
            std::span<const std::byte> data, std::uint64_t offset, v2p::Fua fua) override {
    auto& c = v2p::state_as<Counts>(state);
    c.writes.fetch_add(1, std::memory_order_relaxed);
    c.bytes.fetch_add(data.size(), std::memory_order_relaxed);
    return next.write(ctx, data, offset, fua);
  }
  // zero, trim, flush and the capability hooks are not overridden: the defaults forward them,
  // so the guest keeps every feature the stack below offers.

 private:
  v2p::FilterContext& context_;  // valid for the filter's whole life
};

}  // namespace

// Stamps the SDK ABI and writes the three entry points v2p looks up after dlopen.
V2P_FILTER(PassthruFilter)
