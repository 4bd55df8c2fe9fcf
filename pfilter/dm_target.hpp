// The dm-v2p target (kmod/, docs/dm-target.md) driven through libdevmapper: create, remove,
// status and the run-time messages (limit, prio, stats, reset), and a parser of its status line.
// What `v2p dm` runs; the kernel side is the only place the limits live.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace v2p::pfilter {

// One accounting class of a v2p device, as its status line reports it.
struct DmV2pClass {
  std::string name;  // "untagged", "other" or the process id of a tagged submitter
  std::uint64_t ios = 0;
  std::uint64_t bytes = 0;
  std::uint64_t iops_limit = 0;  // 0: none
  std::uint64_t bps_limit = 0;   // bytes per second, 0: none
  std::string prio = "none:0";   // ioprio class:level set on the class's bios ("none": kept)
  std::uint64_t delayed = 0;     // bios held back by a limit
  bool operator==(const DmV2pClass&) const = default;
};

struct DmV2pStatus {
  std::uint64_t records = 0;  // records this device sent to the ring (kept across reloads)
  std::uint64_t dropped = 0;  // records the ring dropped (module-wide)
  std::vector<DmV2pClass> classes;
};

// Parses the target's STATUSTYPE_INFO text (what follows "<start> <length> v2p " in `dmsetup
// status`). Throws v2p::Error naming the field that does not parse.
DmV2pStatus parse_dm_v2p_status(std::string_view params);

// The table line of a v2p target over `device` from `offset` (sectors): "v2p" params.
std::string dm_v2p_params(const std::string& device, std::uint64_t offset);

// These need root and a kernel with device-mapper and the dm-v2p module; each throws
// v2p::Error with the reason the kernel or libdevmapper gave (also logged by the kernel).
// Creates /dev/mapper/NAME over the whole of `device` from `offset` sectors.
void dm_v2p_create(const std::string& name, const std::string& device, std::uint64_t offset);
void dm_v2p_remove(const std::string& name);
// The status line's parameters (one v2p target per device).
std::string dm_v2p_status_text(const std::string& name);
// Sends a message to sector 0 of NAME; returns the target's answer (empty for most).
std::string dm_v2p_message(const std::string& name, const std::string& message);

}  // namespace v2p::pfilter
