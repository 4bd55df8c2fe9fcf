// One I/O asked of a stage on the asynchronous path (BlockBackend::submit): what to do, for whom,
// and where the end goes. The connection embeds one per NBD request; a stage that needs I/O of its
// own below (an asynchronous filter splitting or duplicating a request) takes a child from the
// connection's IoChannel pool, so the data path allocates nothing per host I/O.
//
// A stage that passes the same range down with the same completion hands the *same* StageIo to
// the stage below: an asynchronous stage that only forwards costs one virtual call.
#pragma once

#include <boost/intrusive/list_hook.hpp>

#include <cstddef>
#include <cstdint>

#include "v2p/filter.hpp"
#include "vfilter/block_backend.hpp"

namespace v2p::vfilter {

class IoChannel;

enum class StageOp : std::uint8_t { kRead, kWrite, kZero, kTrim, kFlush };

struct StageIo : boost::intrusive::list_base_hook<> {
  StageOp op = StageOp::kRead;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::byte* buf = nullptr;  // kRead and kWrite: `length` bytes
  Fua fua = Fua::kNo;
  MayPunch may_punch = MayPunch::kYes;
  IoTarget who;  // names, ids and the guest offset; who.host points back here
  IoChannel* channel = nullptr;
  std::uint16_t slot = 0;  // the request's tag slot
  bool tagging = false;    // host I/O of this request carries the slot
  v2p::Completion* done = nullptr;

  // The host I/O in flight for the stage now holding the io (the image ring or a worker): the
  // completion thread calls on_cqe(owner, io, result) when its CQE arrives.
  void (*on_cqe)(void* owner, StageIo& io, int res) noexcept = nullptr;
  void* owner = nullptr;
  std::uint8_t phase = 0;
  std::uint8_t host_op = 0;  // IoOp of the host I/O, for its context record
  bool host_tagged = false;  // the host I/O carries the slot
  bool thread_done = false;  // a worker did the host I/O: its result is thread_result
  int thread_result = 0;
  std::uint64_t progress = 0;
  std::uint64_t cur_off = 0;
  std::uint32_t cur_len = 0;
  std::uint64_t submit_ns = 0;

  // A child's end: gives the child back to the pool, then tells the asker.
  struct Relay final : v2p::Completion {
    StageIo* self = nullptr;
    v2p::Completion* upper = nullptr;
    void done(int result) noexcept override;
  } relay;

  void complete(int res) noexcept { done->done(res); }
  [[nodiscard]] std::uint16_t ioprio() const noexcept;
};

// The StageIo a request context carries (null outside a request).
inline StageIo* host_io(const void* host) noexcept {
  return static_cast<StageIo*>(const_cast<void*>(host));
}

}  // namespace v2p::vfilter
