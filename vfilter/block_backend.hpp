// A vdisk backend the export drives with synchronous calls, for everything that is not a plain
// image file on the io_uring path: an upstream NBD server (qemu-storage-daemon serving a qcow2), a
// flash cache in front of an image, a tier remap. Stages stack: each holds the next one and
// forwards explicitly (docs/vfilter.md, "Block backends").
//
// Two entries. The export calls submit() (asynchronous, on the connection's reader thread); a
// stage that overrides it (the image's io_uring path, an asynchronous filter) ends the I/O on
// the connection's completion thread with no thread handoff. The default runs the synchronous
// call below on one of the connection's TaggedWorkers threads with the request's tag as the
// thread's I/O priority, so file I/O a stage does on that thread is attributed to the request.
// Synchronous calls may block; they arrive concurrently from several threads and connections;
// a backend synchronises itself.
#pragma once

#include <sys/types.h>
#include <cstddef>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace v2p::vfilter {

// Who an I/O is for: the names and the stream ids of the request's VM and vdisk.
struct IoTarget {
  std::string_view vm;
  std::string_view vdisk;
  std::uint32_t vm_id = 0;
  std::uint32_t vdisk_id = 0;
  std::uint16_t ioprio = 0;    // the tag the worker thread runs under (0 = untagged)
  std::uint64_t voffset = 0;   // the guest offset of the whole NBD request
  const void* host = nullptr;  // the request's StageIo (null outside a request)
};

struct StageIo;

enum class Fua : bool { kNo = false, kYes = true };
enum class MayPunch : bool { kNo = false, kYes = true };

class BlockBackend {
 public:
  virtual ~BlockBackend() = default;

  [[nodiscard]] virtual std::uint64_t size() const = 0;
  [[nodiscard]] virtual bool read_only() const { return false; }
  // What the vdisk's data is, for declarations and `v2p verify` (an image path or a URI).
  [[nodiscard]] virtual std::string describe() const = 0;
  // Processes other than this one that do the vdisk's host I/O, without the tag (an upstream
  // NBD server). Empty (the default) when every host I/O runs on the calling worker thread and
  // carries its tag. Non-empty makes the export publish its records untagged, naming that
  // process, and declare it to the sink, so the correlator joins its bios by completion window
  // (docs/correlator.md). A stage forwarding to such a backend forwards this too.
  [[nodiscard]] virtual std::vector<pid_t> opaque_processes() const { return {}; }

  // What the NBD handshake advertises for the vdisk. A stage over another forwards what it does
  // not narrow (FilterStage asks its filter); the defaults are what a full backend offers.
  [[nodiscard]] virtual bool can_fua() const { return true; }
  [[nodiscard]] virtual bool can_trim() const { return true; }
  [[nodiscard]] virtual bool can_zero() const { return true; }
  [[nodiscard]] virtual bool can_multi_conn() const { return true; }
  [[nodiscard]] virtual std::uint32_t min_block() const { return 1; }
  // Alignment of the request buffers the export hands down (O_DIRECT needs the device's).
  [[nodiscard]] virtual std::uint32_t buffer_align() const { return 4096; }
  // True when submit() never hands the request to a worker thread (the whole stack below is
  // asynchronous); the connection then keeps only a few workers.
  [[nodiscard]] virtual bool asynchronous() const { return false; }

  // Starts `io` and returns; io.complete(0 or -errno) is called exactly once, on the connection's
  // completion thread (or here, when it fails before any host I/O). Must not block. The
  // default runs the synchronous call on a tagged worker (see the top of this file).
  virtual void submit(StageIo& io) noexcept;

  // Each returns 0 when the whole range is done, or -errno. The range is inside size() (the
  // export validated it). A backend never returns partial success.
  virtual int read(const IoTarget& who, std::span<std::byte> out, std::uint64_t offset) = 0;
  // With Fua::kYes the data is durable before the call returns.
  virtual int write(const IoTarget& who, std::span<const std::byte> data, std::uint64_t offset,
                    Fua fua) = 0;
  // Reads back as zeros afterwards; MayPunch::kYes lets the backend deallocate.
  virtual int write_zeroes(const IoTarget& who, std::uint64_t offset, std::uint64_t length,
                           MayPunch may_punch, Fua fua) = 0;
  // Advisory: the range's contents become unspecified. Returning 0 without doing anything is fine.
  virtual int trim(const IoTarget& who, std::uint64_t offset, std::uint64_t length) = 0;
  // Everything completed before the call is durable when it returns.
  virtual int flush(const IoTarget& who) = 0;
};

}  // namespace v2p::vfilter
