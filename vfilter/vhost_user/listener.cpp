#include "vfilter/vhost_user/listener.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/core.h>

#include <cstring>

#include "common/error.hpp"
#include "vfilter/file_backend.hpp"
#include "vfilter/peer_identity.hpp"

namespace v2p::vfilter::vhost_user {

namespace {

// Reads exactly `n` bytes (after what recvmsg already delivered); false at EOF or error.
bool read_full(int fd, std::byte* p, std::size_t n) {
  while (n > 0) {
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

bool write_full(int fd, const std::byte* p, std::size_t n) {
  while (n > 0) {
    const ssize_t r = ::send(fd, p, n, MSG_NOSIGNAL);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

// One message header with the fds that came with it; false at EOF or on a broken stream.
bool read_header(int fd, std::uint32_t hdr[3], std::vector<int>& fds) {
  iovec iov{hdr, kHeaderSize};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t r = 0;
  do {
    r = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  } while (r < 0 && errno == EINTR);
  if (r <= 0) return false;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < n; ++i) {
      int f = -1;
      std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
      fds.push_back(f);
    }
  }
  // Truncated control data means fds were lost: the session cannot be trusted.
  if (msg.msg_flags & MSG_CTRUNC) return false;
  return read_full(fd, reinterpret_cast<std::byte*>(hdr) + r,
                   kHeaderSize - static_cast<std::size_t>(r));
}

}  // namespace

Listener::Listener(ServerContext& ctx, std::size_t export_index,
                   const std::filesystem::path& socket, mode_t mode, BlkDeviceOptions options)
    : ctx_(ctx), export_(ctx.exports.at(export_index)), socket_(socket), options_(options) {
  // Every vdisk has a stack; one with nothing stacked is the image stage alone.
  backend_ = export_.backend;
  if (!backend_) throw Error("vhost-user: the vdisk has no stage stack");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket.string().size() >= sizeof addr.sun_path) {
    throw Error(fmt::format("vhost-user socket path too long: {}", socket.string()));
  }
  std::strncpy(addr.sun_path, socket.c_str(), sizeof addr.sun_path - 1);
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw Error("cannot create the vhost-user socket");
  // The socket gets its mode before anyone can connect: bind under a umask, then chmod.
  const mode_t old = ::umask(0777 & ~mode);
  const int rc = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (rc != 0 || ::chmod(socket.c_str(), mode) != 0 || ::listen(listen_fd_, 4) != 0) {
    const std::string why = std::strerror(errno);
    ::close(listen_fd_);
    throw Error(fmt::format("cannot listen on vhost-user socket {}: {} (in use? remove it)",
                            socket.string(), why));
  }
  if (::pipe2(stop_pipe_, O_CLOEXEC) != 0) {
    ::close(listen_fd_);
    ::unlink(socket.c_str());
    throw Error("cannot create a pipe");
  }
  thread_ = std::thread([this] { accept_loop(); });
}

Listener::~Listener() {
  const char c = 0;
  if (::write(stop_pipe_[1], &c, 1) < 0) {
  }
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::close(stop_pipe_[0]);
  ::close(stop_pipe_[1]);
  ::unlink(socket_.c_str());
}

void Listener::accept_loop() noexcept {
  for (;;) {
    pollfd fds[2] = {{stop_pipe_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if (fds[0].revents != 0) return;
    if (!(fds[1].revents & POLLIN)) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    sessions_.fetch_add(1);
    try {
      serve(fd);
    } catch (const std::exception& e) {
      fmt::print(stderr, "v2p vhost-user: session error: {}\n", e.what());
    }
    ::close(fd);
  }
}

void Listener::serve(int fd) {
  const std::string vm = export_.config.vm.empty() ? discover_peer_vm(fd) : export_.config.vm;
  BlkDevice device(ctx_, export_, backend_, vm, options_);
  std::vector<std::byte> payload;
  for (;;) {
    pollfd fds[2] = {{stop_pipe_[0], POLLIN, 0}, {fd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if (fds[0].revents != 0) return;
    if (fds[1].revents == 0) continue;
    std::uint32_t hdr[3] = {};
    std::vector<int> msg_fds;
    const bool ok = read_header(fd, hdr, msg_fds);
    // A payload larger than any message we know is a broken or hostile peer.
    if (!ok || (hdr[1] & kVersionMask) != kVersion || hdr[2] > kMaxPayload) {
      for (int f : msg_fds) ::close(f);
      return;  // the frontend went away: the device's destructor drains and unmaps
    }
    payload.resize(hdr[2]);
    if (!read_full(fd, payload.data(), payload.size())) {
      for (int f : msg_fds) ::close(f);
      return;
    }
    auto reply = device.handle(hdr[0], hdr[1], payload, msg_fds);
    if (reply.close) return;
    if (!reply.send) continue;
    const std::uint32_t out[3] = {hdr[0], kVersion | kFlagReply,
                                  static_cast<std::uint32_t>(reply.payload.size())};
    if (!write_full(fd, reinterpret_cast<const std::byte*>(out), sizeof out) ||
        !write_full(fd, reply.payload.data(), reply.payload.size())) {
      return;
    }
  }
}

}  // namespace v2p::vfilter::vhost_user
