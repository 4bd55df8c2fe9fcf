// The io_uring image path: FileBackend::submit. One host I/O of a StageIo at a time on the
// connection's ring; short transfers continue where they ended, WRITE_ZEROES falls back to
// writing zeros where fallocate is missing, FUA adds an fsync. Every read and write carries the
// request's slot in the SQE's ioprio hint bits and publishes the slot's context first.
#include <fcntl.h>
#include <linux/falloc.h>

#include <algorithm>
#include <cerrno>

#include "common/clock.hpp"
#include "v2p/tag.hpp"
#include "vfilter/file_backend.hpp"
#include "vfilter/io_channel.hpp"

namespace v2p::vfilter {
namespace {

enum Phase : std::uint8_t { kData, kZeroFill, kFallocate, kSync };

}  // namespace

void FileBackend::on_cqe(void* self, StageIo& io, int res) noexcept {
  static_cast<FileBackend*>(self)->ring_done(io, res);
}

void FileBackend::submit(StageIo& io) noexcept {
  if (read_only_ && io.op != StageOp::kRead && io.op != StageOp::kFlush) {
    return io.complete(-EROFS);
  }
  switch (io.op) {
    case StageOp::kRead:
    case StageOp::kWrite:
      io.phase = kData;
      break;
    case StageOp::kZero:
    case StageOp::kTrim:
      io.phase = kFallocate;
      break;
    case StageOp::kFlush:
      io.phase = kSync;
      break;
  }
  // Zero-length data requests are valid and need no host I/O.
  if (io.phase != kSync && io.length == 0) return io.complete(0);
  io.progress = 0;
  io.on_cqe = &FileBackend::on_cqe;
  io.owner = this;
  ring_step(io);
}

void FileBackend::ring_step(StageIo& io) noexcept {
  const std::uint64_t remaining = io.length - io.progress;
  if (io.tagging && io.phase == kData && io.op == StageOp::kWrite &&
      image_.direct_writes_are_buffered()) {
    // The file system flushes these writes from the submitting thread: only a thread running
    // under the tag carries it to the bios (image_file.hpp).
    io.cur_off = io.offset + io.progress;
    io.cur_len = static_cast<std::uint32_t>(remaining);
    io.host_op = static_cast<std::uint8_t>(IoOp::kWrite);
    io.host_tagged = true;
    if (auto* table = io.channel->slot_table()) {
      table->publish(io.slot, io.who.vm_id, io.who.vdisk_id, io.cur_off);
    }
    const int fd = image_.fd_for(io.cur_off, io.cur_len);
    std::byte* at = io.buf + io.progress;
    try {
      io.channel->run_on_worker(
          io, io.ioprio(), [fd, at, &io] { return pwrite_all(fd, at, io.cur_len, io.cur_off); });
    } catch (...) {
      ring_done(io, -ENOMEM);
    }
    return;
  }
  const int rc = io.channel->submit_sqe(io, [&](io_uring_sqe* sqe) {
    switch (io.phase) {
      case kData: {
        io.cur_off = io.offset + io.progress;
        io.cur_len = static_cast<std::uint32_t>(remaining);
        const int fd = image_.fd_for(io.cur_off, io.cur_len);
        std::byte* at = io.buf + io.progress;
        if (io.op == StageOp::kRead) {
          io.host_op = static_cast<std::uint8_t>(IoOp::kRead);
          io_uring_prep_read(sqe, fd, at, io.cur_len, io.cur_off);
        } else {
          io.host_op = static_cast<std::uint8_t>(IoOp::kWrite);
          io_uring_prep_write(sqe, fd, at, io.cur_len, io.cur_off);
        }
        break;
      }
      case kZeroFill:
        io.cur_off = io.offset + io.progress;
        io.cur_len = static_cast<std::uint32_t>(std::min<std::uint64_t>(remaining, kZeroChunk));
        io.host_op = static_cast<std::uint8_t>(IoOp::kWriteZeroes);
        io_uring_prep_write(sqe, image_.fd_for(io.cur_off, io.cur_len), zero_chunk(), io.cur_len,
                            io.cur_off);
        break;
      case kFallocate: {
        io.cur_off = io.offset;
        io.cur_len = static_cast<std::uint32_t>(io.length);
        int mode = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE;
        if (io.op == StageOp::kZero && io.may_punch == MayPunch::kNo) {
          mode = FALLOC_FL_KEEP_SIZE | FALLOC_FL_ZERO_RANGE;
        }
        io.host_op = static_cast<std::uint8_t>(io.op == StageOp::kTrim ? IoOp::kDiscard
                                                                       : IoOp::kWriteZeroes);
        io_uring_prep_fallocate(sqe, image_.buffered_fd(), mode, static_cast<off_t>(io.cur_off),
                                static_cast<off_t>(io.cur_len));
        break;
      }
      case kSync:
      default:
        // A full fsync: it also covers metadata (size, allocation of punched/zeroed ranges).
        io.cur_off = 0;
        io.cur_len = 0;
        io.host_op = static_cast<std::uint8_t>(IoOp::kFlush);
        io_uring_prep_fsync(sqe, image_.buffered_fd(), 0);
        break;
    }
    // Only reads and writes take an ioprio: the kernel refuses one on fsync and fallocate
    // (EINVAL, measured on 6.18), and those carry no guest data to attribute anyway.
    const bool data_io = io.phase == kData || io.phase == kZeroFill;
    io.host_tagged = io.tagging && data_io;
    // The kernel reads the slot's context when the bio is queued, after this submission.
    if (io.host_tagged) {
      if (auto* table = io.channel->slot_table()) {
        table->publish(io.slot, io.who.vm_id, io.who.vdisk_id, io.cur_off);
      }
    }
    sqe->ioprio = io.host_tagged ? v2p::tag::ioprio_for_slot(io.slot) : 0;
    io.submit_ns = monotonic_ns();
  });
  if (rc < 0) ring_done(io, rc);
}

void FileBackend::ring_done(StageIo& io, int res) noexcept {
  io.channel->publish(io, res);
  switch (io.phase) {
    case kData:
    case kZeroFill:
      if (res < 0) return io.complete(res);
      if (res == 0) return io.complete(io.op == StageOp::kRead ? -EIO : -ENOSPC);
      io.progress += static_cast<std::uint64_t>(res);
      if (io.progress < io.length) return ring_step(io);  // short transfer: continue
      break;
    case kFallocate:
      if (res == -EOPNOTSUPP || res == -ENODEV) {
        // Trim is advisory; zeroing falls back to writing zeros.
        if (io.op == StageOp::kZero) {
          io.phase = kZeroFill;
          io.progress = 0;
          return ring_step(io);
        }
      } else if (res < 0) {
        return io.complete(res);
      }
      break;
    case kSync:
    default:
      return io.complete(res < 0 ? res : 0);
  }
  // Data is in place; FUA means it must be durable before the reply.
  if (io.fua == Fua::kYes && io.op != StageOp::kRead) {
    io.phase = kSync;
    return ring_step(io);
  }
  io.complete(0);
}

}  // namespace v2p::vfilter
