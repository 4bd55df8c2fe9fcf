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
// hooks of one vdisk run on several threads at once (one per connection).
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
  // Asynchronous: the hooks below run on the connection's own threads and must not block, so a
  // request never waits for a worker thread. A filter that must block (a file of its own, a
  // sleep) keeps the default kBlocking and overrides read/write instead (samples/mirror-filter).
  v2p::DataModel data_model() const override { return v2p::DataModel::kAsync; }

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
  // would do it here. Handing `ctx` down unchanged keeps the request's tag on the host I/O
  // below; handing `done` down unchanged lets the host pass the same request on without
  // allocating, so this filter costs one virtual call. The stage below calls done.done(0 or
  // -errno) when the I/O ends: the client sees the real error.
  void read_async(v2p::Next& next, v2p::VdiskState* state, const v2p::RequestContext& ctx,
                  std::span<std::byte> out, std::uint64_t offset, v2p::Completion& done) override {
    auto& c = v2p::state_as<Counts>(state);
    c.reads.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic orders nothing
    c.bytes.fetch_add(out.size(), std::memory_order_relaxed);
    next.read_async(ctx, out, offset, done);
  }
  void write_async(v2p::Next& next, v2p::VdiskState* state, const v2p::RequestContext& ctx,
                   std::span<const std::byte> data, std::uint64_t offset, v2p::Fua fua,
                   v2p::Completion& done) override {
    auto& c = v2p::state_as<Counts>(state);
    c.writes.fetch_add(1, std::memory_order_relaxed);
    c.bytes.fetch_add(data.size(), std::memory_order_relaxed);
    next.write_async(ctx, data, offset, fua, done);
  }
  // To act after the I/O below ends (decrypt what was read, count errors), pass a Completion
  // of your own instead of `done` and call done.done(result) from it; keep it in memory you own
  // per request, since done() runs on another thread after this hook returned.
  // zero, trim, flush and the capability hooks are not overridden: the defaults forward them,
  // so the guest keeps every feature the stack below offers.

 private:
  v2p::FilterContext& context_;  // valid for the filter's whole life
};

}  // namespace

// Stamps the SDK ABI and writes the three entry points v2p looks up after dlopen.
V2P_FILTER(PassthruFilter)
