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
// Threads (per hook below): open/close run on the thread that builds the stack, before the
// export listens and after it stopped. Data hooks run on the export's tagged worker threads,
// concurrently for different requests of one vdisk and of several vdisks; they may block, and
// every host I/O a hook issues on its own thread carries the request's tag (the worker runs under
// the request's I/O priority), so the correlator attributes it to the guest request. A data hook
// returns 0 or -errno; a hook that throws gives the client EIO for that request, is counted and
// logged once, and nothing else stops. docs/sdk.md has one section per hook; samples/*-filter
// are complete filters.
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
};

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

// The stage below a filter. Calls return 0 or -errno (never partial success) and may block.
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

  // Data hooks: tagged worker thread, concurrent, may block; 0 or -errno. The range is inside
  // the vdisk (the export validated it). Defaults forward unchanged.
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
