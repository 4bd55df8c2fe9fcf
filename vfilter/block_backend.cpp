// The default asynchronous entry of a blocking stage: the synchronous call on a tagged worker.
#include "vfilter/block_backend.hpp"

#include "vfilter/io_channel.hpp"

namespace v2p::vfilter {
namespace {

int call_sync(BlockBackend& b, StageIo& io) {
  switch (io.op) {
    case StageOp::kRead:
      return b.read(io.who, std::span(io.buf, io.length), io.offset);
    case StageOp::kWrite:
      return b.write(io.who, std::span<const std::byte>(io.buf, io.length), io.offset, io.fua);
    case StageOp::kZero:
      return b.write_zeroes(io.who, io.offset, io.length, io.may_punch, io.fua);
    case StageOp::kTrim:
      return b.trim(io.who, io.offset, io.length);
    case StageOp::kFlush:
      break;
  }
  return b.flush(io.who);
}

IoOp host_op(StageOp op) {
  switch (op) {
    case StageOp::kRead:
      return IoOp::kRead;
    case StageOp::kWrite:
      return IoOp::kWrite;
    case StageOp::kZero:
      return IoOp::kWriteZeroes;
    case StageOp::kTrim:
      return IoOp::kDiscard;
    case StageOp::kFlush:
      break;
  }
  return IoOp::kFlush;
}

// One record for the whole request: what the stage did on the worker is its own business.
void on_worker_done(void*, StageIo& io, int res) noexcept {
  io.channel->publish(io, res);
  io.complete(res);
}

}  // namespace

void BlockBackend::submit(StageIo& io) noexcept {
  io.host_op = static_cast<std::uint8_t>(host_op(io.op));
  io.cur_off = io.offset;
  io.cur_len = io.op == StageOp::kFlush ? 0 : static_cast<std::uint32_t>(io.length);
  // Flushes and trims carry no guest data to attribute (the ring path leaves them untagged too).
  io.host_tagged = io.tagging && io.op != StageOp::kFlush && io.op != StageOp::kTrim;
  const std::uint16_t ioprio = io.host_tagged ? io.ioprio() : 0;
  io.who.ioprio = ioprio;
  io.who.host = &io;
  io.on_cqe = &on_worker_done;
  io.owner = this;
  try {
    io.channel->run_on_worker(io, ioprio, [this, &io] { return call_sync(*this, io); });
  } catch (...) {
    io.complete(-ENOMEM);  // no worker thread could be started
  }
}

}  // namespace v2p::vfilter
