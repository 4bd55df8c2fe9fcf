#include "vfilter/filter_stage.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <semaphore>

#include "common/error.hpp"
#include "vfilter/io_channel.hpp"
#include "vfilter/stage_io.hpp"

namespace v2p::vfilter {

RequestContext request_context(const IoTarget& who) noexcept {
  return RequestContext{who.vm,    who.vdisk,    who.voffset, who.ioprio,
                        who.vm_id, who.vdisk_id, who.host};
}

IoTarget io_target(const RequestContext& ctx) noexcept {
  return IoTarget{ctx.vm, ctx.vdisk, ctx.vm_id, ctx.vdisk_id, ctx.tag, ctx.voffset, ctx.host};
}

namespace {

// The end of a synchronous call into an asynchronous filter.
struct Waiter final : v2p::Completion {
  std::binary_semaphore ready{0};
  int result = 0;
  void done(int r) noexcept override {
    result = r;
    ready.release();
  }
  int wait() noexcept {
    ready.acquire();
    return result;
  }
};

}  // namespace

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

  void read_async(const RequestContext& ctx, std::span<std::byte> out, std::uint64_t offset,
                  v2p::Completion& done) override {
    start(ctx, StageOp::kRead, out.data(), offset, out.size(), vfilter::Fua::kNo,
          vfilter::MayPunch::kYes, done);
  }
  void write_async(const RequestContext& ctx, std::span<const std::byte> data, std::uint64_t offset,
                   v2p::Fua fua, v2p::Completion& done) override {
    // The buffer is only read below; StageIo has one pointer for both directions.
    start(ctx, StageOp::kWrite, const_cast<std::byte*>(data.data()), offset, data.size(),
          vfilter::Fua(static_cast<bool>(fua)), vfilter::MayPunch::kYes, done);
  }
  void zero_async(const RequestContext& ctx, std::uint64_t offset, std::uint64_t length,
                  v2p::MayPunch may_punch, v2p::Fua fua, v2p::Completion& done) override {
    start(ctx, StageOp::kZero, nullptr, offset, length, vfilter::Fua(static_cast<bool>(fua)),
          vfilter::MayPunch(static_cast<bool>(may_punch)), done);
  }
  void trim_async(const RequestContext& ctx, std::uint64_t offset, std::uint64_t length,
                  v2p::Completion& done) override {
    start(ctx, StageOp::kTrim, nullptr, offset, length, vfilter::Fua::kNo, vfilter::MayPunch::kYes,
          done);
  }
  void flush_async(const RequestContext& ctx, v2p::Completion& done) override {
    start(ctx, StageOp::kFlush, nullptr, 0, 0, vfilter::Fua::kNo, vfilter::MayPunch::kYes, done);
  }

 private:
  void start(const RequestContext& ctx, StageOp op, std::byte* buf, std::uint64_t offset,
             std::uint64_t length, vfilter::Fua fua, vfilter::MayPunch may_punch,
             v2p::Completion& done) noexcept {
    StageIo* host = host_io(ctx.host);
    if (host == nullptr || host->channel == nullptr) {
      // Outside a request (open, close, a thread of the filter's own): run it here.
      done.done(run_sync(ctx, op, buf, offset, length, fua, may_punch));
      return;
    }
    if (&done == host->done && op == host->op && buf == host->buf && offset == host->offset &&
        length == host->length && fua == host->fua && may_punch == host->may_punch) {
      // Forwarded unchanged: the same StageIo goes down, nothing is allocated or copied.
      host->who = io_target(ctx);
      host->who.host = host;
      below_.submit(*host);
      return;
    }
    StageIo* child = nullptr;
    try {
      child = &host->channel->acquire();
    } catch (...) {
      done.done(-ENOMEM);
      return;
    }
    child->op = op;
    child->buf = buf;
    child->offset = offset;
    child->length = length;
    child->fua = fua;
    child->may_punch = may_punch;
    child->who = io_target(ctx);
    child->who.host = child;
    child->channel = host->channel;
    child->slot = host->slot;
    child->tagging = host->tagging;
    child->relay.self = child;
    child->relay.upper = &done;
    child->done = &child->relay;
    below_.submit(*child);
  }

  int run_sync(const RequestContext& ctx, StageOp op, std::byte* buf, std::uint64_t offset,
               std::uint64_t length, vfilter::Fua fua, vfilter::MayPunch may_punch) noexcept {
    try {
      const IoTarget who = io_target(ctx);
      switch (op) {
        case StageOp::kRead:
          return below_.read(who, std::span(buf, length), offset);
        case StageOp::kWrite:
          return below_.write(who, std::span<const std::byte>(buf, length), offset, fua);
        case StageOp::kZero:
          return below_.write_zeroes(who, offset, length, may_punch, fua);
        case StageOp::kTrim:
          return below_.trim(who, offset, length);
        case StageOp::kFlush:
          break;
      }
      return below_.flush(who);
    } catch (...) {
      return -EIO;
    }
  }

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
    async_ = filter_->data_model() == DataModel::kAsync;
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
  failed(std::move(why));
  return -EIO;
}

void FilterStage::failed(std::string why) noexcept {
  failures_.fetch_add(1, std::memory_order_relaxed);
  // One line per stage, not one per request: a broken filter must not flood the log.
  if (!failure_logged_.exchange(true) && log_) {
    try {
      log_(fmt::format("filter {}: {}; the request fails with EIO (further failures counted)",
                       name_, why));
    } catch (...) {
    }
  }
}

template <class Hook>
int FilterStage::wait_for(const char* hook, Hook&& call) noexcept {
  Waiter w;
  const int rc = guarded(hook, [&] {
    call(w);
    return 0;
  });
  if (rc < 0) return rc;  // threw: by the rules it called neither next nor done
  const int result = w.wait();
  if (result > 0) {
    failed(fmt::format("{} completed with {} (hooks complete with 0 or -errno)", hook, result));
    return -EIO;
  }
  return result;
}

void FilterStage::submit(StageIo& io) noexcept {
  if (!async_) return BlockBackend::submit(io);
  io.who.host = &io;
  const RequestContext ctx = request_context(io.who);
  VdiskState* state = state_.get();
  static constexpr const char* kHook[] = {"read_async", "write_async", "zero_async", "trim_async",
                                          "flush_async"};
  const int rc = guarded(kHook[static_cast<int>(io.op)], [&] {
    switch (io.op) {
      case StageOp::kRead:
        filter_->read_async(*next_, state, ctx, std::span(io.buf, io.length), io.offset, *io.done);
        break;
      case StageOp::kWrite:
        filter_->write_async(*next_, state, ctx, std::span<const std::byte>(io.buf, io.length),
                             io.offset, v2p::Fua(static_cast<bool>(io.fua)), *io.done);
        break;
      case StageOp::kZero:
        filter_->zero_async(*next_, state, ctx, io.offset, io.length,
                            v2p::MayPunch(static_cast<bool>(io.may_punch)),
                            v2p::Fua(static_cast<bool>(io.fua)), *io.done);
        break;
      case StageOp::kTrim:
        filter_->trim_async(*next_, state, ctx, io.offset, io.length, *io.done);
        break;
      case StageOp::kFlush:
        filter_->flush_async(*next_, state, ctx, *io.done);
        break;
    }
    return 0;
  });
  // A hook that threw called neither next nor done (filter.hpp): the request ends here.
  if (rc < 0) io.complete(rc);
}

int FilterStage::read(const IoTarget& who, std::span<std::byte> out, std::uint64_t offset) {
  if (async_) {
    return wait_for("read", [&](v2p::Completion& done) {
      filter_->read_async(*next_, state_.get(), request_context(who), out, offset, done);
    });
  }
  return guarded("read", [&] {
    return filter_->read(*next_, state_.get(), request_context(who), out, offset);
  });
}

int FilterStage::write(const IoTarget& who, std::span<const std::byte> data, std::uint64_t offset,
                       vfilter::Fua fua) {
  if (async_) {
    return wait_for("write", [&](v2p::Completion& done) {
      filter_->write_async(*next_, state_.get(), request_context(who), data, offset,
                           v2p::Fua(static_cast<bool>(fua)), done);
    });
  }
  return guarded("write", [&] {
    return filter_->write(*next_, state_.get(), request_context(who), data, offset,
                          v2p::Fua(static_cast<bool>(fua)));
  });
}

int FilterStage::write_zeroes(const IoTarget& who, std::uint64_t offset, std::uint64_t length,
                              vfilter::MayPunch may_punch, vfilter::Fua fua) {
  if (async_) {
    return wait_for("zero", [&](v2p::Completion& done) {
      filter_->zero_async(*next_, state_.get(), request_context(who), offset, length,
                          v2p::MayPunch(static_cast<bool>(may_punch)),
                          v2p::Fua(static_cast<bool>(fua)), done);
    });
  }
  return guarded("zero", [&] {
    return filter_->zero(*next_, state_.get(), request_context(who), offset, length,
                         v2p::MayPunch(static_cast<bool>(may_punch)),
                         v2p::Fua(static_cast<bool>(fua)));
  });
}

int FilterStage::trim(const IoTarget& who, std::uint64_t offset, std::uint64_t length) {
  if (async_) {
    return wait_for("trim", [&](v2p::Completion& done) {
      filter_->trim_async(*next_, state_.get(), request_context(who), offset, length, done);
    });
  }
  return guarded("trim", [&] {
    return filter_->trim(*next_, state_.get(), request_context(who), offset, length);
  });
}

int FilterStage::flush(const IoTarget& who) {
  if (async_) {
    return wait_for("flush", [&](v2p::Completion& done) {
      filter_->flush_async(*next_, state_.get(), request_context(who), done);
    });
  }
  return guarded("flush",
                 [&] { return filter_->flush(*next_, state_.get(), request_context(who)); });
}

}  // namespace v2p::vfilter
