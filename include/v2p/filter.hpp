// Writing a filter: one class in the data path of `v2p serve`, registered by
// V2P_FILTER(ClassName), built as a shared object and loaded with
// `v2p serve --filter FILE.so --filter-arg key=value` (or "filters" in the config file).
//
// A filter is a stage: every data hook receives `next` (the stage below it) and forwards
// explicitly, the way nbdkit filters do. A hook a filter does not override forwards unchanged,
// so the smallest filter overrides nothing. Capability hooks (can_fua, can_trim, …) also forward
// by default; a filter may only narrow what the stage below offers.
//
// Where a filter sits: filters are ordered by their FilterClass, then by the order given, so a
// cache always sits below an encryption or replication filter whatever the command line says.
// Below every loaded filter come the built-in stages (flash cache, tier) and the image.
//
// Two data models (data_model()): a blocking filter (the default) overrides the blocking data
// hooks, which run on the export's tagged worker threads and may block; an asynchronous filter
// overrides the *_async hooks, which run on the connection's own threads, must not block, and
// finish through a Completion, so a stack of asynchronous filters over the image costs no thread
// handoff per request (completions come back on the connection's io_uring).
//
// Threads (per hook below): open/close run on the thread that builds the stack, before the
// export listens and after it stopped. Blocking data hooks run concurrently for different
// requests of one vdisk and of several vdisks, and every host I/O a hook issues on its own thread
// carries the request's tag (the worker runs under the request's I/O priority); host I/O issued
// through `next` carries it in every model, so the correlator attributes it to the guest request.
// A data hook returns (or completes with) 0 or -errno; a hook that throws gives the client EIO
// for that request, is counted and logged once, and nothing else stops. docs/sdk.md has one
// section per hook; samples/*-filter are complete filters.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "v2p/export.hpp"
#include "v2p/sdk.hpp"

namespace v2p {

// The request a data hook serves. `voffset` is the guest's offset of the whole NBD request (a
// stage above may have split or moved the range a hook is asked for); `tag` is the I/O priority
// value every host I/O of the request carries (0 = untagged); vm_id and vdisk_id are the ids the
// map uses (VdiskKey) for this VM and vdisk.
struct RequestContext {
  std::string_view vm;
  std::string_view vdisk;
  std::uint64_t voffset = 0;
  std::uint16_t tag = 0;
  std::uint32_t vm_id = 0;
  std::uint32_t vdisk_id = 0;
  // The host's handle of the request (its tag slot, its connection's ring). Pass the context, or
  // a copy with other fields changed, down to `next` unchanged; null outside a request (open,
  // close), where `next` runs the I/O on the calling thread.
  const void* host = nullptr;
};

// The end of an asynchronous data hook or `next` call: done() is called exactly once with 0 or
// -errno, on the connection's completion thread (or on the calling thread when the I/O ends
// before it started, e.g. an invalid request). done() must not block: it runs where completions
// of other requests are reaped.
class Completion {
 public:
  virtual void done(int result) noexcept = 0;

 protected:
  ~Completion() = default;
};

// Which data hooks the host calls (see the top of this header).
enum class DataModel : std::uint8_t { kBlocking = 0, kAsync = 1 };

// With kYes the data must be durable when the hook returns.
enum class Fua : bool { kNo = false, kYes = true };
// kYes lets a zero hook deallocate the range.
enum class MayPunch : bool { kNo = false, kYes = true };

// Filter classes, top (nearest the guest) to bottom (nearest the disk), as VMware VAIO orders
// them: what inspects or limits sees the guest's I/O, encryption happens before data is copied
// elsewhere, replication copies what will be stored, and a cache holds what is stored.
enum class FilterClass : std::uint8_t {
  kInspection = 0,
  kQos = 1,
  kCompression = 2,
  kEncryption = 3,
  kReplication = 4,
  kCache = 5,
};

// The stage below a filter. The blocking calls return 0 or -errno (never partial success) and may
// block: call them from blocking hooks (or open/close). The *_async calls return at once and end
// in `done`: call them from asynchronous hooks (blocking hooks may too).
class Next {
 public:
  virtual ~Next() = default;
  [[nodiscard]] virtual std::uint64_t size() const = 0;
  virtual int read(const RequestContext& ctx, std::span<std::byte> out, std::uint64_t offset) = 0;
  virtual int write(const RequestContext& ctx, std::span<const std::byte> data,
                    std::uint64_t offset, Fua fua) = 0;
  virtual int zero(const RequestContext& ctx, std::uint64_t offset, std::uint64_t length,
                   MayPunch may_punch, Fua fua) = 0;
  virtual int trim(const RequestContext& ctx, std::uint64_t offset, std::uint64_t length) = 0;
  virtual int flush(const RequestContext& ctx) = 0;
  [[nodiscard]] virtual bool can_fua() const = 0;
  [[nodiscard]] virtual bool can_trim() const = 0;
  [[nodiscard]] virtual bool can_zero() const = 0;
  [[nodiscard]] virtual bool can_multi_conn() const = 0;
  // Smallest I/O size the stage below serves without a read-modify-write (1 = any).
  [[nodiscard]] virtual std::uint32_t min_block() const = 0;

  virtual void read_async(const RequestContext& ctx, std::span<std::byte> out, std::uint64_t offset,
                          Completion& done) = 0;
  virtual void write_async(const RequestContext& ctx, std::span<const std::byte> data,
                           std::uint64_t offset, Fua fua, Completion& done) = 0;
  virtual void zero_async(const RequestContext& ctx, std::uint64_t offset, std::uint64_t length,
                          MayPunch may_punch, Fua fua, Completion& done) = 0;
  virtual void trim_async(const RequestContext& ctx, std::uint64_t offset, std::uint64_t length,
                          Completion& done) = 0;
  virtual void flush_async(const RequestContext& ctx, Completion& done) = 0;
};

// Which vdisk open() is called for.
struct VdiskInfo {
  std::string_view vm;  // empty when the VM is identified per connection
  std::string_view vdisk;
  std::string_view image;  // what the vdisk's data is (a path or URI), for messages
  bool read_only = false;
};

// A filter's state for one vdisk: derive from it, return it from open(), and read it back in the
// hooks with state_as<YourState>(state).
class VdiskState {
 public:
  virtual ~VdiskState() = default;
};

template <class S>
S& state_as(VdiskState* state) {
  return static_cast<S&>(*state);
}

// What the host offers a filter. Owned by the host; valid until the filter is destroyed.
class FilterContext {
 public:
  virtual ~FilterContext() = default;
  // A line in the serve log, prefixed with the filter's name. Any thread.
  virtual void log(std::string_view line) = 0;
};

// --filter-arg key=value pairs, in the order given.
using FilterArgs = std::vector<std::pair<std::string, std::string>>;

class Filter {
 public:
  virtual ~Filter() = default;
  // A short name for the log and errors. Any thread; must not block.
  [[nodiscard]] virtual std::string_view name() const = 0;
  // Where the filter sits (see FilterClass). Called once, when the stack is built.
  [[nodiscard]] virtual FilterClass filter_class() const { return FilterClass::kInspection; }
  // Which data hooks the host calls: the blocking ones (default) or the *_async ones. Called
  // once, when the stack is built.
  [[nodiscard]] virtual DataModel data_model() const { return DataModel::kBlocking; }

  // Per vdisk, on the stack-building thread, may block. Returns the vdisk's state (null = none);
  // throwing refuses the vdisk and `v2p serve` stops with the message. `next` stays valid until
  // close().
  virtual std::unique_ptr<VdiskState> open(const VdiskInfo& vdisk, Next& next) {
    (void)vdisk;
    (void)next;
    return nullptr;
  }
  // After the export stopped (no hook runs any more), before the state is destroyed; may block
  // (flush a mirror, write an index). Exceptions are logged.
  virtual void close(VdiskState* state, Next& next) {
    (void)state;
    (void)next;
  }

  // Blocking data hooks (data_model() == kBlocking): tagged worker thread, concurrent, may block;
  // 0 or -errno. The range is inside the vdisk (the export validated it). Defaults forward
  // unchanged.
  virtual int read(Next& next, VdiskState* state, const RequestContext& ctx,
                   std::span<std::byte> out, std::uint64_t offset) {
    (void)state;
    return next.read(ctx, out, offset);
  }
  virtual int write(Next& next, VdiskState* state, const RequestContext& ctx,
                    std::span<const std::byte> data, std::uint64_t offset, Fua fua) {
    (void)state;
    return next.write(ctx, data, offset, fua);
  }
  virtual int zero(Next& next, VdiskState* state, const RequestContext& ctx, std::uint64_t offset,
                   std::uint64_t length, MayPunch may_punch, Fua fua) {
    (void)state;
    return next.zero(ctx, offset, length, may_punch, fua);
  }
  virtual int trim(Next& next, VdiskState* state, const RequestContext& ctx, std::uint64_t offset,
                   std::uint64_t length) {
    (void)state;
    return next.trim(ctx, offset, length);
  }
  virtual int flush(Next& next, VdiskState* state, const RequestContext& ctx) {
    (void)state;
    return next.flush(ctx);
  }

  // Asynchronous data hooks (data_model() == kAsync): called on the connection's reader or
  // completion thread, concurrently, must not block; they return at once and call done.done()
  // exactly once, with 0 or -errno, usually by handing `done` (or a Completion of their own) to
  // a next.*_async call. A hook that throws must not have called next or done: the request then
  // completes with EIO. Defaults forward unchanged (at no cost: the same completion goes down).
  virtual void read_async(Next& next, VdiskState* state, const RequestContext& ctx,
                          std::span<std::byte> out, std::uint64_t offset, Completion& done) {
    (void)state;
    next.read_async(ctx, out, offset, done);
  }
  virtual void write_async(Next& next, VdiskState* state, const RequestContext& ctx,
                           std::span<const std::byte> data, std::uint64_t offset, Fua fua,
                           Completion& done) {
    (void)state;
    next.write_async(ctx, data, offset, fua, done);
  }
  virtual void zero_async(Next& next, VdiskState* state, const RequestContext& ctx,
                          std::uint64_t offset, std::uint64_t length, MayPunch may_punch, Fua fua,
                          Completion& done) {
    (void)state;
    next.zero_async(ctx, offset, length, may_punch, fua, done);
  }
  virtual void trim_async(Next& next, VdiskState* state, const RequestContext& ctx,
                          std::uint64_t offset, std::uint64_t length, Completion& done) {
    (void)state;
    next.trim_async(ctx, offset, length, done);
  }
  virtual void flush_async(Next& next, VdiskState* state, const RequestContext& ctx,
                           Completion& done) {
    (void)state;
    next.flush_async(ctx, done);
  }

  // Capability hooks: once per vdisk, on the stack-building thread after open(), must not block.
  // What they return is what the NBD handshake advertises; returning true where `next` says
  // false is ignored (a filter may only narrow).
  virtual bool can_fua(Next& next, VdiskState* state) {
    (void)state;
    return next.can_fua();
  }
  virtual bool can_trim(Next& next, VdiskState* state) {
    (void)state;
    return next.can_trim();
  }
  virtual bool can_zero(Next& next, VdiskState* state) {
    (void)state;
    return next.can_zero();
  }
  virtual bool can_multi_conn(Next& next, VdiskState* state) {
    (void)state;
    return next.can_multi_conn();
  }
  // May only raise the block size (a power of two up to 64 KiB).
  virtual std::uint32_t min_block(Next& next, VdiskState* state) {
    (void)state;
    return next.min_block();
  }
};

}  // namespace v2p

// The entry points a filter shared object exports; V2P_FILTER writes them. The host checks
// v2p_filter_abi() against its own kSdkAbiVersion before calling anything else.
extern "C" {
V2P_API std::uint32_t v2p_filter_abi();
V2P_API v2p::Filter* v2p_filter_create(v2p::FilterContext* context, const v2p::FilterArgs* args);
V2P_API void v2p_filter_destroy(v2p::Filter* filter);
}

// In exactly one source file of the filter: V2P_FILTER(MyFilter), where MyFilter has a
// constructor MyFilter(v2p::FilterContext&, const v2p::FilterArgs&) that throws on bad args.
#define V2P_FILTER(ClassName)                                                      \
  extern "C" V2P_API std::uint32_t v2p_filter_abi() {                              \
    return ::v2p::kSdkAbiVersion;                                                  \
  }                                                                                \
  extern "C" V2P_API v2p::Filter* v2p_filter_create(v2p::FilterContext* context,   \
                                                    const v2p::FilterArgs* args) { \
    return new ClassName(*context, *args);                                         \
  }                                                                                \
  extern "C" V2P_API void v2p_filter_destroy(v2p::Filter* filter) {                \
    delete filter;                                                                 \
  }
