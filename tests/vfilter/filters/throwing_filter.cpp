// A broken filter: reads of the first 4 KiB throw, writes there return -EPERM; everything else
// forwards. The host must answer those requests with an error and keep serving the rest.
#include <v2p/filter.hpp>

#include <cerrno>
#include <stdexcept>

namespace {

class ThrowingFilter final : public v2p::Filter {
 public:
  ThrowingFilter(v2p::FilterContext&, const v2p::FilterArgs&) {}
  std::string_view name() const override { return "throwing"; }
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
};

}  // namespace

V2P_FILTER(ThrowingFilter)
