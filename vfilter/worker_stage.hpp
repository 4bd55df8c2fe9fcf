// A stage that forwards everything to the stage below but only through the synchronous calls, so
// every request goes through a tagged worker thread (BlockBackend's default submit). It is what
// `v2p serve --file-backend` puts over the image: the blocking path with no stage on it, to
// measure what a handoff per request costs against the io_uring image path.
#pragma once

#include <memory>
#include <utility>

#include "vfilter/block_backend.hpp"

namespace v2p::vfilter {

class WorkerStage final : public BlockBackend {
 public:
  explicit WorkerStage(std::shared_ptr<BlockBackend> below) : below_(std::move(below)) {}
  [[nodiscard]] std::uint64_t size() const override { return below_->size(); }
  [[nodiscard]] bool read_only() const override { return below_->read_only(); }
  [[nodiscard]] std::string describe() const override { return below_->describe(); }
  [[nodiscard]] bool can_fua() const override { return below_->can_fua(); }
  [[nodiscard]] bool can_trim() const override { return below_->can_trim(); }
  [[nodiscard]] bool can_zero() const override { return below_->can_zero(); }
  [[nodiscard]] bool can_multi_conn() const override { return below_->can_multi_conn(); }
  [[nodiscard]] std::uint32_t min_block() const override { return below_->min_block(); }
  [[nodiscard]] std::uint32_t buffer_align() const override { return below_->buffer_align(); }

  int read(const IoTarget& who, std::span<std::byte> out, std::uint64_t offset) override {
    return below_->read(who, out, offset);
  }
  int write(const IoTarget& who, std::span<const std::byte> data, std::uint64_t offset,
            Fua fua) override {
    return below_->write(who, data, offset, fua);
  }
  int write_zeroes(const IoTarget& who, std::uint64_t offset, std::uint64_t length,
                   MayPunch may_punch, Fua fua) override {
    return below_->write_zeroes(who, offset, length, may_punch, fua);
  }
  int trim(const IoTarget& who, std::uint64_t offset, std::uint64_t length) override {
    return below_->trim(who, offset, length);
  }
  int flush(const IoTarget& who) override { return below_->flush(who); }

 private:
  std::shared_ptr<BlockBackend> below_;
};

}  // namespace v2p::vfilter
