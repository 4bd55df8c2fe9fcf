// Finding the QEMU processes an agent attaches to by itself (docs/attach.md, "The agent"): every
// qemu-system-* and qemu-storage-daemon whose VM name was opted in, and the devices of the
// images they have open for writing, which the probe must watch before their I/O is joined.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "v2p/types.hpp"

namespace v2p::agent {

struct QemuProcess {
  pid_t pid = 0;
  std::string vm;  // QEMU's -name, else "qemu-PID" (qemu-storage-daemon has none)
};

// The QEMU processes whose vm is in `opted_in` ("*" opts every one in).
std::vector<QemuProcess> find_qemu_processes(const std::vector<std::string>& opted_in);

// The block devices under the regular files `pid` has open for writing (its images); files on
// no block device are skipped.
std::vector<DeviceId> image_devices(pid_t pid);

}  // namespace v2p::agent
