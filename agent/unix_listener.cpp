#include "agent/unix_listener.hpp"

#include <fmt/core.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "common/error.hpp"

namespace v2p::agent {

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

gid_t group_id(const std::string& group) {
  const ::group* g = ::getgrnam(group.c_str());
  if (g == nullptr) throw Error(fmt::format("group '{}' does not exist", group));
  return g->gr_gid;
}

Fd listen_unix(const std::filesystem::path& path, int type, unsigned mode,
               const std::string& group) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string p = path.string();
  if (p.empty() || p.size() >= sizeof addr.sun_path) {
    throw Error(fmt::format("socket path '{}' is empty or longer than {} bytes", p,
                            sizeof addr.sun_path - 1));
  }
  std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
  std::error_code ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  struct stat st {};
  if (::lstat(p.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) throw Error(fmt::format("{} exists and is not a socket", p));
    // A live one belongs to another agent: refuse rather than steal it. A dead one (a killed
    // agent's) is replaced.
    Fd probe(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
    if (probe.get() >= 0 &&
        ::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
      throw Error(fmt::format("{} is in use: another v2p agent is running", p));
    }
    ::unlink(p.c_str());
  }
  Fd fd(::socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) throw system_error("socket");
  // The mode applies from the first instant: nobody else can connect between bind and chmod.
  const mode_t old_umask = ::umask(0777 & ~mode);
  const int rc = ::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  const int bind_errno = errno;
  ::umask(old_umask);
  if (rc != 0) throw system_error(fmt::format("bind {}", p), bind_errno);
  if (::chmod(p.c_str(), mode) != 0) throw system_error(fmt::format("chmod {}", p));
  if (!group.empty() && ::chown(p.c_str(), static_cast<uid_t>(-1), group_id(group)) != 0) {
    throw system_error(fmt::format("chown {} to group {}", p, group));
  }
  if (::listen(fd.get(), 64) != 0) throw system_error(fmt::format("listen {}", p));
  return fd;
}

}  // namespace v2p::agent
