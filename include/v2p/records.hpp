// The two streams the correlator joins, as fixed-width, pointer-free records. They are the
// in-process API between the filters and the correlator and, byte for byte, the payloads of the
// record files (see docs/formats.md and common/record_file.hpp).
#pragma once

#include <cstdint>
#include <string>

#include "v2p/types.hpp"

namespace v2p {

// One virtual-layer request as the vfilter saw it, published when it completes.
struct ContextRecord {
  std::uint64_t submit_ns = 0;    // CLOCK_MONOTONIC, just before the SQE was submitted
  std::uint64_t complete_ns = 0;  // CLOCK_MONOTONIC, when the CQE was reaped
  std::uint64_t voffset = 0;      // byte offset in the vdisk
  std::uint32_t length = 0;       // bytes
  std::uint32_t tgid = 0;         // process that submitted the host I/O
  std::uint32_t vm_id = 0;
  std::uint32_t vdisk_id = 0;
  std::int32_t result = 0;  // 0 or -errno
  std::uint16_t slot = 0;   // ioprio hint carried by the host I/O; 0 = untagged
  std::uint8_t op = 0;      // IoOp
  std::uint8_t flags = 0;   // kContextFua, ...
  std::uint64_t seq = 0;    // per-process sequence number, for loss detection
  std::uint64_t reserved = 0;

  [[nodiscard]] VirtualOffset offset() const noexcept { return VirtualOffset{voffset}; }
  [[nodiscard]] VdiskKey key() const noexcept { return {VmId{vm_id}, VdiskId{vdisk_id}}; }
};
static_assert(sizeof(ContextRecord) == 64);

inline constexpr std::uint8_t kContextFua = 1;
inline constexpr std::uint8_t kContextNoHole = 2;

// Names for the numeric ids in ContextRecord; published once per vdisk before its first record.
struct VdiskDeclaration {
  std::uint32_t vm_id = 0;
  std::uint32_t vdisk_id = 0;
  std::string vm_name;
  std::string vdisk_name;
  std::string image_path;  // absolute path of the image file or block device behind the vdisk
};

// Which block-layer hook produced a PhysEvent.
enum class PhysEventKind : std::uint8_t { kQueue = 0, kRemap = 1, kComplete = 2 };

// One physical-layer I/O as the pfilter saw it (shared with the eBPF side, see pfilter/).
struct PhysEvent {
  std::uint64_t ts_ns = 0;       // bpf_ktime_get_ns == CLOCK_MONOTONIC
  std::uint64_t sector = 0;      // 512-byte sector on dev
  std::uint64_t old_sector = 0;  // remap only: sector on old_dev
  std::uint64_t latency_ns = 0;  // complete only
  std::uint32_t dev = 0;         // kernel encoding (major << 20 | minor)
  std::uint32_t old_dev = 0;     // remap only
  std::uint32_t bytes = 0;
  std::uint32_t tgid = 0;
  std::uint32_t tid = 0;
  std::uint32_t cmd_flags = 0;  // REQ_OP_* | REQ_* as the kernel had them
  std::uint16_t ioprio = 0;
  std::uint8_t op = 0;     // IoOp
  std::uint8_t kind = 0;   // PhysEventKind
  std::int32_t error = 0;  // complete only
  char comm[16] = {};

  [[nodiscard]] DeviceId device() const noexcept { return DeviceId::from_kernel(dev); }
  [[nodiscard]] PhysicalSector first_sector() const noexcept { return PhysicalSector{sector}; }
};
static_assert(sizeof(PhysEvent) == 80);

}  // namespace v2p
