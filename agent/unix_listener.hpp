// Listening unix sockets for the agent: the parent directory made if missing, a stale socket
// file replaced, the mode and group applied before anyone can connect.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>

namespace v2p::agent {

// Closes on destruction; movable.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  ~Fd();
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  [[nodiscard]] int get() const noexcept { return fd_; }
  int release() noexcept {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

// The group's id; throws v2p::Error naming the group when it does not exist.
gid_t group_id(const std::string& group);

// A non-blocking listening socket of `type` (SOCK_STREAM, SOCK_SEQPACKET) at `path`, mode `mode`,
// owned by root:group (group "" = unchanged). Throws v2p::Error.
Fd listen_unix(const std::filesystem::path& path, int type, unsigned mode,
               const std::string& group);

}  // namespace v2p::agent
