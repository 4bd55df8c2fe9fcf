// Writing a policy: one class with a few hooks, registered by V2P_POLICY(ClassName), built as a
// shared object and loaded with `v2p serve --policy FILE.so --policy-arg key=value`.
//
// The policy decides, the core acts: hooks observe I/O, map changes and time, read statistics
// and the map through PolicyContext, and act only through the narrow control interfaces the
// context hands out (a cache's, a tier's), which are null when that mechanism is not configured.
// docs/sdk.md has one section per hook; samples/ has complete policies.
//
// Threads: on_io, on_map_change and on_tick are called from one policy thread, never
// concurrently, in time order; they may take a few microseconds, not block. admit() is the
// exception: it runs on data-path worker threads, concurrently, and must be thread-safe and
// non-blocking. A hook that throws is reported and the policy is unloaded; I/O goes on.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "v2p/export.hpp"
#include "v2p/heat.hpp"
#include "v2p/map.hpp"
#include "v2p/sdk.hpp"
#include "v2p/types.hpp"

namespace v2p {

// One completed guest request, as the vfilter saw it, with where it physically went when the
// map knows (has_physical; the first extent of the range).
struct IoEvent {
  VdiskKey vdisk;
  std::string_view vm_name;
  std::string_view vdisk_name;
  IoOp op = IoOp::kOther;
  VirtualOffset voffset;
  std::uint32_t length = 0;
  std::uint64_t time_ns = 0;     // completion, CLOCK_MONOTONIC
  std::uint64_t latency_ns = 0;  // submission to completion
  int result = 0;                // 0 or -errno
  bool has_physical = false;
  DeviceId device;
  PhysicalSector sector;
};

enum class MapChangeKind : std::uint8_t { kMapped, kRelocated, kUnmapped };

// A change of the V2P map: a range first seen, seen at a new place (copy-on-write), or dropped.
struct MapChange {
  MapChangeKind kind = MapChangeKind::kMapped;
  VdiskKey vdisk;
  VirtualOffset voffset;
  std::uint64_t length = 0;
  DeviceId device;  // the new place (kMapped, kRelocated) or the old one (kUnmapped)
  PhysicalSector sector;
  std::uint64_t generation = 0;
};

// The answer of Policy::admit for a cache miss.
enum class Admission : std::uint8_t {
  kDefault,  // let the cache's own admission filter decide
  kAdmit,    // cache it
  kBypass,   // never cache this
};

class CacheControl;  // v2p/cache.hpp
class TierControl;   // v2p/tier.hpp

// What a policy may see and do. Owned by the host; valid until the policy is destroyed.
class PolicyContext {
 public:
  virtual ~PolicyContext() = default;
  // The live map (correlator output; empty without the probe). Only valid inside a hook.
  [[nodiscard]] virtual const V2PMap& map() const = 0;
  // Heat per extent of every vdisk the host serves, fed by all I/O, updated before on_io.
  [[nodiscard]] virtual const HeatMap& heat() const = 0;
  // Latency of the vdisk's completed requests since the start.
  [[nodiscard]] virtual LatencyHistogram latency(VdiskKey vdisk) const = 0;
  // Names the vfilter declared, empty when unknown.
  [[nodiscard]] virtual std::string vm_name(VmId vm) const = 0;
  [[nodiscard]] virtual std::string vdisk_name(VdiskKey vdisk) const = 0;
  // Mechanisms; null when not configured for this `v2p serve`.
  [[nodiscard]] virtual CacheControl* cache() = 0;
  [[nodiscard]] virtual TierControl* tier() = 0;
  // A line in the serve log, prefixed with the policy's name.
  virtual void log(std::string_view line) = 0;
};

// --policy-arg key=value pairs, in the order given.
using PolicyArgs = std::vector<std::pair<std::string, std::string>>;

class Policy {
 public:
  virtual ~Policy() = default;
  [[nodiscard]] virtual std::string_view name() const = 0;
  // Optional (default: nothing).
  virtual void on_io(const IoEvent& event) { (void)event; }
  virtual void on_map_change(const MapChange& change) { (void)change; }
  // Every tick interval (1 s by default, `--policy-tick-ms`).
  virtual void on_tick(std::uint64_t now_ns) { (void)now_ns; }
  // Optional, data-path thread (see the top): should this read miss be cached?
  virtual Admission admit(const IoEvent& miss) const {
    (void)miss;
    return Admission::kDefault;
  }
};

}  // namespace v2p

// The entry points a policy shared object exports; V2P_POLICY writes them. The host checks
// v2p_policy_abi() against its own kSdkAbiVersion before calling anything else.
extern "C" {
V2P_API std::uint32_t v2p_policy_abi();
V2P_API v2p::Policy* v2p_policy_create(v2p::PolicyContext* context, const v2p::PolicyArgs* args);
V2P_API void v2p_policy_destroy(v2p::Policy* policy);
}

// In exactly one source file of the policy: V2P_POLICY(MyPolicy), where MyPolicy has a
// constructor MyPolicy(v2p::PolicyContext&, const v2p::PolicyArgs&) that throws on bad args.
#define V2P_POLICY(ClassName)                                                      \
  extern "C" V2P_API std::uint32_t v2p_policy_abi() {                              \
    return ::v2p::kSdkAbiVersion;                                                  \
  }                                                                                \
  extern "C" V2P_API v2p::Policy* v2p_policy_create(v2p::PolicyContext* context,   \
                                                    const v2p::PolicyArgs* args) { \
    return new ClassName(*context, *args);                                         \
  }                                                                                \
  extern "C" V2P_API void v2p_policy_destroy(v2p::Policy* policy) {                \
    delete policy;                                                                 \
  }
