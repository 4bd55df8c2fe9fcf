// One file descriptor passed along a message on a unix socket (SCM_RIGHTS): how the agent hands
// an unprivileged export the probe's slot table, a map it could never open itself (every bpf()
// call needs privileges on hosts with unprivileged BPF off).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <span>

namespace v2p {

// Sends `bytes` as one message with a copy of `fd` attached. Returns false and sets errno when
// the socket refuses (EAGAIN on a full non-blocking socket, EPIPE...).
bool send_with_fd(int socket, std::span<const std::byte> bytes, int fd) noexcept;

// Receives one message into `buf`; *fd is the descriptor attached to it (close-on-exec, owned
// by the caller) or -1 when none came. A message with more than one descriptor, or with its
// control data cut short, has them all closed and fails with EPROTO: the peer is not speaking
// this protocol. Returns recvmsg's value.
ssize_t recv_with_fd(int socket, std::span<std::byte> buf, int* fd, int flags) noexcept;

}  // namespace v2p
