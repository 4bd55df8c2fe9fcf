// A broken filter: reads of the first 4 KiB throw, writes there return -EPERM; everything else
// forwards. The host must answer those requests with an error and keep serving the rest. With
// async=yes the same through the asynchronous hooks (DataModel::kAsync).
#include <v2p/filter.hpp>

#include <cerrno>
#include <stdexcept>

namespace {

class ThrowingFilter final : public v2p::Filter {
 public:
  ThrowingFilter(v2p::FilterContext&, const v2p::FilterArgs& args) {
    for (const auto& [k, v] : args) async_ = k == "async" && v == "yes";
  }
  std::string_view name() const override { return "throwing"; }
  v2p::DataModel data_model() const override {
    return async_ ? v2p::DataModel::kAsync : v2p::DataModel::kBlocking;
  }
  void read_async(v2p::Next& next, v2p::VdiskState*, const v2p::RequestContext& ctx,
                  std::span<std::byte> out, std::uint64_t offset, v2p::Completion& done) override {
    if (offset < 4096) throw std::runtime_error("poisoned block");
    next.read_async(ctx, out, offset, done);
  }
  void write_async(v2p::Next& next, v2p::VdiskState*, const v2p::RequestContext& ctx,
                   std::span<const std::byte> data, std::uint64_t offset, v2p::Fua fua,
                   v2p::Completion& done) override {
    if (offset < 4096) return done.done(-EPERM);
    next.write_async(ctx, data, offset, fua, done);
  }
  int read(v2p::Next& next, v2p::VdiskState*, const v2p::RequestContext& ctx,
           std::span<std::byte> out, std::uint64_t offset) override {
    if (offset < 4096) throw std::runtime_error("poisoned block");
    return next.read(ctx, out, offset);
  }
  int write(v2p::Next& next, v2p::VdiskState*, const v2p::RequestContext& ctx,
            std::span<const std::byte> data, std::uint64_t offset, v2p::Fua fua) override {
    if (offset < 4096) return -EPERM;
    return next.write(ctx, data, offset, fua);
  }

 private:
  bool async_ = false;
};

}  // namespace

V2P_FILTER(ThrowingFilter)
