// A loaded filter (include/v2p/filter.hpp) as one stage of a vdisk's stack: the BlockBackend the
// stage above (or the export) calls, running the filter's hooks with `next` = the stage below.
// It owns the filter's per-vdisk state (open() in the constructor, close() in the destructor)
// and turns a hook that throws or returns nonsense into -EIO for that request, logged once.
//
// An asynchronous filter (DataModel::kAsync) runs on the connection's threads through submit():
// its *_async hooks, with `next` handing the same StageIo down when the range and the
// completion are unchanged (a forwarding filter costs one virtual call) or a child StageIo from
// the connection's pool otherwise. Called synchronously (from a blocking stage above, or open and
// close), it waits for its own completion. A blocking filter runs on the tagged workers, as
// every blocking stage does (BlockBackend::submit).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "v2p/filter.hpp"
#include "vfilter/block_backend.hpp"

namespace v2p::vfilter {

class FilterStage final : public BlockBackend {
 public:
  using Log = std::function<void(std::string_view line)>;
  // Calls open(), then the capability hooks; throws v2p::Error naming the filter when open()
  // throws. `filter` keeps its library loaded until the last stage using it is gone.
  FilterStage(std::shared_ptr<Filter> filter, std::shared_ptr<BlockBackend> below,
              const VdiskInfo& vdisk, Log log);
  ~FilterStage() override;  // close(): the export has stopped

  [[nodiscard]] std::uint64_t size() const override { return below_->size(); }
  [[nodiscard]] bool read_only() const override { return below_->read_only(); }
  [[nodiscard]] std::string describe() const override { return below_->describe(); }
  [[nodiscard]] std::vector<pid_t> opaque_processes() const override {
    return below_->opaque_processes();
  }
  [[nodiscard]] bool can_fua() const override { return can_fua_; }
  [[nodiscard]] bool can_trim() const override { return can_trim_; }
  [[nodiscard]] bool can_zero() const override { return can_zero_; }
  [[nodiscard]] bool can_multi_conn() const override { return can_multi_conn_; }
  [[nodiscard]] std::uint32_t min_block() const override { return min_block_; }
  [[nodiscard]] std::uint32_t buffer_align() const override { return below_->buffer_align(); }
  [[nodiscard]] bool asynchronous() const override { return async_ && below_->asynchronous(); }

  void submit(StageIo& io) noexcept override;

  int read(const IoTarget& who, std::span<std::byte> out, std::uint64_t offset) override;
  int write(const IoTarget& who, std::span<const std::byte> data, std::uint64_t offset,
            vfilter::Fua fua) override;
  int write_zeroes(const IoTarget& who, std::uint64_t offset, std::uint64_t length,
                   vfilter::MayPunch may_punch, vfilter::Fua fua) override;
  int trim(const IoTarget& who, std::uint64_t offset, std::uint64_t length) override;
  int flush(const IoTarget& who) override;

  [[nodiscard]] const BlockBackend& below() const noexcept { return *below_; }
  // Requests the filter failed by throwing (or by returning a positive number).
  [[nodiscard]] std::uint64_t hook_failures() const noexcept { return failures_.load(); }

 private:
  class Below;
  template <class Hook>
  int guarded(const char* hook, Hook&& call) noexcept;
  // Runs an asynchronous hook and waits for it (the synchronous entry of an async filter).
  template <class Hook>
  int wait_for(const char* hook, Hook&& call) noexcept;
  void failed(std::string why) noexcept;

  // Declared first so it goes last: the state's destructor is code in the filter's library.
  std::shared_ptr<Filter> filter_;
  std::shared_ptr<BlockBackend> below_;
  std::unique_ptr<Below> next_;
  std::unique_ptr<VdiskState> state_;
  Log log_;
  std::string name_;
  bool can_fua_ = true, can_trim_ = true, can_zero_ = true, can_multi_conn_ = true;
  std::uint32_t min_block_ = 1;
  bool async_ = false;
  std::atomic<std::uint64_t> failures_{0};
  std::atomic<bool> failure_logged_{false};
};

// The request context a filter sees for an I/O target, and back.
RequestContext request_context(const IoTarget& who) noexcept;
IoTarget io_target(const RequestContext& ctx) noexcept;

}  // namespace v2p::vfilter
