// Which VM is on the other end of a connection, for vdisks configured without a VM name:
// SO_PEERCRED on the unix socket gives the QEMU pid, its command line gives the name.
#pragma once

#include <string>
#include <vector>

namespace v2p::vfilter {

// The VM name a QEMU command line carries: `-name guest=X,...`, `-name X[,...]`, else
// `-uuid U`; empty when neither is present. Pure, for tests.
std::string vm_name_from_cmdline(const std::vector<std::string>& argv);

// The arguments of /proc/<pid>/cmdline; empty when the process is gone or unreadable.
std::vector<std::string> read_cmdline(int pid);

// Name for the peer of an accepted unix-socket connection: from its command line when it is a
// QEMU with -name/-uuid, else "pid-N"; "unknown" when the kernel does not tell the pid.
std::string discover_peer_vm(int unix_fd);

}  // namespace v2p::vfilter
