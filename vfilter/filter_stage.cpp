#include "vfilter/filter_stage.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <exception>

#include "common/error.hpp"

namespace v2p::vfilter {

RequestContext request_context(const IoTarget& who) noexcept {
  return RequestContext{who.vm, who.vdisk, who.voffset, who.ioprio, who.vm_id, who.vdisk_id};
}

IoTarget io_target(const RequestContext& ctx) noexcept {
  return IoTarget{ctx.vm, ctx.vdisk, ctx.vm_id, ctx.vdisk_id, ctx.tag, ctx.voffset};
}

// `next` as the filter sees it: the stage below, called on the filter's own thread so its host
// I/O keeps the request's tag.
class FilterStage::Below final : public Next {
 public:
  explicit Below(BlockBackend& below) : below_(below) {}
  std::uint64_t size() const override { return below_.size(); }
  int read(const RequestContext& ctx, std::span<std::byte> out, std::uint64_t offset) override {
    return below_.read(io_target(ctx), out, offset);
  }
  int write(const RequestContext& ctx, std::span<const std::byte> data, std::uint64_t offset,
            v2p::Fua fua) override {
    return below_.write(io_target(ctx), data, offset, vfilter::Fua(static_cast<bool>(fua)));
  }
  int zero(const RequestContext& ctx, std::uint64_t offset, std::uint64_t length,
           v2p::MayPunch may_punch, v2p::Fua fua) override {
    return below_.write_zeroes(io_target(ctx), offset, length,
                               vfilter::MayPunch(static_cast<bool>(may_punch)),
                               vfilter::Fua(static_cast<bool>(fua)));
  }
  int trim(const RequestContext& ctx, std::uint64_t offset, std::uint64_t length) override {
    return below_.trim(io_target(ctx), offset, length);
  }
  int flush(const RequestContext& ctx) override { return below_.flush(io_target(ctx)); }
  bool can_fua() const override { return below_.can_fua(); }
  bool can_trim() const override { return below_.can_trim(); }
  bool can_zero() const override { return below_.can_zero(); }
  bool can_multi_conn() const override { return below_.can_multi_conn(); }
  std::uint32_t min_block() const override { return below_.min_block(); }

 private:
  BlockBackend& below_;
};

FilterStage::FilterStage(std::shared_ptr<Filter> filter, std::shared_ptr<BlockBackend> below,
                         const VdiskInfo& vdisk, Log log)
    : filter_(std::move(filter)),
      below_(std::move(below)),
      next_(std::make_unique<Below>(*below_)),
      log_(std::move(log)),
      name_(filter_->name()) {
  try {
    state_ = filter_->open(vdisk, *next_);
    // A filter may only narrow what the stage below offers.
    can_fua_ = below_->can_fua() && filter_->can_fua(*next_, state_.get());
    can_trim_ = below_->can_trim() && filter_->can_trim(*next_, state_.get());
    can_zero_ = below_->can_zero() && filter_->can_zero(*next_, state_.get());
    can_multi_conn_ = below_->can_multi_conn() && filter_->can_multi_conn(*next_, state_.get());
    const std::uint32_t block = filter_->min_block(*next_, state_.get());
    if (block == 0 || (block & (block - 1)) != 0 || block > 65536) {
      throw Error(fmt::format("min_block returned {}, not a power of two up to 64 KiB", block));
    }
    min_block_ = std::max(block, below_->min_block());
  } catch (const std::exception& e) {
    throw Error(fmt::format("filter {} refused vdisk {}: {}", name_, vdisk.vdisk, e.what()));
  }
}

FilterStage::~FilterStage() {
  try {
    filter_->close(state_.get(), *next_);
  } catch (const std::exception& e) {
    if (log_) log_(fmt::format("filter {}: close threw: {}", name_, e.what()));
  } catch (...) {
    if (log_) log_(fmt::format("filter {}: close threw a non-standard exception", name_));
  }
}

template <class Hook>
int FilterStage::guarded(const char* hook, Hook&& call) noexcept {
  std::string why;
  try {
    const int rc = call();
    if (rc <= 0) return rc;
    why = fmt::format("{} returned {} (hooks return 0 or -errno)", hook, rc);
  } catch (const std::exception& e) {
    why = fmt::format("{} threw: {}", hook, e.what());
  } catch (...) {
    why = fmt::format("{} threw a non-standard exception", hook);
  }
  failures_.fetch_add(1, std::memory_order_relaxed);
  // One line per stage, not one per request: a broken filter must not flood the log.
  if (!failure_logged_.exchange(true) && log_) {
    try {
      log_(fmt::format("filter {}: {}; the request fails with EIO (further failures counted)",
                       name_, why));
    } catch (...) {
    }
  }
  return -EIO;
}

int FilterStage::read(const IoTarget& who, std::span<std::byte> out, std::uint64_t offset) {
  return guarded("read", [&] {
    return filter_->read(*next_, state_.get(), request_context(who), out, offset);
  });
}

int FilterStage::write(const IoTarget& who, std::span<const std::byte> data, std::uint64_t offset,
                       vfilter::Fua fua) {
  return guarded("write", [&] {
    return filter_->write(*next_, state_.get(), request_context(who), data, offset,
                          v2p::Fua(static_cast<bool>(fua)));
  });
}

int FilterStage::write_zeroes(const IoTarget& who, std::uint64_t offset, std::uint64_t length,
                              vfilter::MayPunch may_punch, vfilter::Fua fua) {
  return guarded("zero", [&] {
    return filter_->zero(*next_, state_.get(), request_context(who), offset, length,
                         v2p::MayPunch(static_cast<bool>(may_punch)),
                         v2p::Fua(static_cast<bool>(fua)));
  });
}

int FilterStage::trim(const IoTarget& who, std::uint64_t offset, std::uint64_t length) {
  return guarded("trim", [&] {
    return filter_->trim(*next_, state_.get(), request_context(who), offset, length);
  });
}

int FilterStage::flush(const IoTarget& who) {
  return guarded("flush",
                 [&] { return filter_->flush(*next_, state_.get(), request_context(who)); });
}

}  // namespace v2p::vfilter
