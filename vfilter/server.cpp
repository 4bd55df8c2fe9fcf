#include "vfilter/server.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/core.h>

#include <cstring>
#include <list>
#include <mutex>
#include <set>
#include <thread>

#include "common/error.hpp"
#include "vfilter/connection.hpp"
#include "vfilter/file_backend.hpp"
#include "vfilter/nbd_upstream_backend.hpp"
#include "vfilter/peer_identity.hpp"
#include "vfilter/vhost_user/listener.hpp"

namespace v2p::vfilter {

VdiskRegistry::Ids VdiskRegistry::ids(const std::string& vm, const std::string& vdisk,
                                      const std::string& image_path,
                                      const std::vector<pid_t>& backend_pids) {
  std::lock_guard lock(mu_);
  const auto vm_it = vms_.try_emplace(vm, static_cast<std::uint32_t>(vms_.size() + 1)).first;
  auto [it, added] =
      vdisks_.try_emplace({vm, vdisk}, static_cast<std::uint32_t>(vdisks_.size() + 1));
  Ids ids{vm_it->second, it->second};
  // Declared under the lock: no record of this vdisk can be published before its declaration.
  if (added && sink_ != nullptr) {
    sink_->declare(VdiskDeclaration{ids.vm_id, ids.vdisk_id, vm, vdisk, image_path});
    for (const pid_t pid : backend_pids) {
      sink_->declare_backend(
          BackendProcess{ids.vm_id, ids.vdisk_id, static_cast<std::uint32_t>(pid), 0});
    }
  }
  return ids;
}

namespace {

class FdGuard {
 public:
  explicit FdGuard(int fd = -1) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  [[nodiscard]] int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

int listen_unix(const std::filesystem::path& path, mode_t mode) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.string().size() >= sizeof addr.sun_path) {
    throw Error(
        fmt::format("unix socket path {} is too long (limit {} bytes); choose a shorter "
                    "path",
                    path.string(), sizeof addr.sun_path - 1));
  }
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  FdGuard fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) throw system_error("cannot create a unix socket");
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      throw Error(fmt::format("{} exists and is not a socket; remove it or choose another --socket",
                              path.string()));
    }
    // A socket nobody answers on is left over from a killed server: replace it.
    FdGuard probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      throw Error(
          fmt::format("another server is already listening on {}; stop it or choose "
                      "another --socket",
                      path.string()));
    }
    ::unlink(path.c_str());
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    throw system_error(
        fmt::format("cannot bind unix socket {} (does the directory exist?)", path.string()));
  }
  if (::chmod(path.c_str(), mode) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    throw system_error("cannot set permissions of " + path.string(), err);
  }
  if (::listen(fd.get(), 64) != 0) {
    const int err = errno;
    ::unlink(path.c_str());
    throw system_error("cannot listen on " + path.string(), err);
  }
  return fd.release();
}

int listen_tcp(const std::string& host, std::uint16_t port, std::uint16_t* bound) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc =
          ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res);
      rc != 0) {
    throw Error(fmt::format("cannot resolve TCP listen address {}: {}", host, gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, freeaddrinfo);
  FdGuard fd(::socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol));
  if (fd.get() < 0) throw system_error("cannot create a TCP socket");
  const int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd.get(), res->ai_addr, res->ai_addrlen) != 0) {
    throw system_error(
        fmt::format("cannot bind TCP {}:{} (port in use? choose another --tcp)", host, port));
  }
  if (::listen(fd.get(), 64) != 0) throw system_error("cannot listen on TCP port");
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
  *bound = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                          : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return fd.release();
}

class ServerImpl final : public Server {
 public:
  ServerImpl(const ServerConfig& config, RecordSink* sink) : ctx_(sink), config_(config) {
    open_exports();
    if (config.unix_socket.empty() && config.tcp_port == 0 && config.vhost_user_socket.empty()) {
      throw Error(
          "no listener configured; give a unix socket (--socket PATH), a TCP port (--tcp) or "
          "a vhost-user socket (--vhost-user PATH)");
    }
    try {
      if (!config.unix_socket.empty()) {
        unix_fd_ = listen_unix(config.unix_socket, config.socket_mode);
        unix_path_ = config.unix_socket;
      }
      if (config.tcp_port != 0) tcp_fd_ = listen_tcp(config.tcp_host, config.tcp_port, &tcp_port_);
      if (::pipe2(stop_pipe_, O_CLOEXEC) != 0) throw system_error("cannot create a pipe");
      if (!config.vhost_user_socket.empty()) {
        vhost_user_ = std::make_unique<vhost_user::Listener>(
            ctx_, 0, config.vhost_user_socket, config.socket_mode,
            vhost_user::BlkDeviceOptions{config.vhost_user_queues, config.vhost_user_threads});
      }
    } catch (...) {
      close_listeners();
      throw;
    }
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  ~ServerImpl() override {
    stop();
    ::close(stop_pipe_[0]);
    ::close(stop_pipe_[1]);
  }

  void stop() override {
    std::lock_guard lock(stop_mu_);
    if (stopped_) return;
    stopped_ = true;
    const char c = 'x';
    [[maybe_unused]] const auto n = ::write(stop_pipe_[1], &c, 1);
    if (acceptor_.joinable()) acceptor_.join();
    vhost_user_.reset();  // ends the session; its requests complete first
    close_listeners();
    std::list<std::unique_ptr<Connection>> conns;
    {
      std::lock_guard clock(conn_mu_);
      conns.swap(connections_);
    }
    for (auto& c : conns) c->shutdown();
    conns.clear();  // joins every connection; their in-flight I/O completes first
  }

  [[nodiscard]] ServerStats stats() const override {
    return {ctx_.connections.load(), ctx_.requests.load(), ctx_.bytes_read.load(),
            ctx_.bytes_written.load(), ctx_.errors.load()};
  }

  [[nodiscard]] std::size_t open_connections() const override {
    std::lock_guard lock(conn_mu_);
    std::size_t n = 0;
    for (const auto& c : connections_) n += c->finished() ? 0 : 1;
    return n;
  }

  [[nodiscard]] std::uint16_t tcp_port() const override { return tcp_port_; }
  void attach_slot_table(int map_fd, std::uint32_t row) override {
    if (!ctx_.tagging) return;
    ctx_.install_slot_table(std::make_unique<pfilter::SlotTable>(map_fd, row));
  }

 private:
  void open_exports() {
    if (config_.vdisks.empty()) throw Error("no vdisk configured; give --image or a --config file");
    std::set<std::string> names;
    ctx_.tagging = config_.tagging;
    if (!config_.tls_creds.empty()) ctx_.tls = std::make_unique<TlsCredentials>(config_.tls_creds);
    if (config_.tagging && config_.slot_table_fd >= 0) {
      ctx_.install_slot_table(
          std::make_unique<pfilter::SlotTable>(config_.slot_table_fd, config_.slot_table_row));
    }
    for (const auto& v : config_.vdisks) {
      ExportRuntime rt;
      rt.config = v;
      if (rt.config.vdisk.empty()) throw Error("a vdisk needs a name (--vdisk NAME)");
      if (rt.config.export_name.empty()) rt.config.export_name = rt.config.vdisk;
      if (!names.insert(rt.config.export_name).second) {
        throw Error(fmt::format("export name '{}' is used twice; export names must be unique",
                                rt.config.export_name));
      }
      // The stack's top; a vdisk nothing was stacked on gets the image's io_uring stage alone.
      if (v.backend) {
        rt.backend = v.backend;
      } else if (!v.upstream.empty()) {
        rt.backend =
            std::make_shared<NbdUpstreamBackend>(v.upstream, v.upstream_connections, v.read_only);
      } else {
        rt.backend = std::make_shared<FileBackend>(v.image, v.read_only, config_.direct_io);
      }
      rt.opaque_pids = rt.backend->opaque_processes();
      rt.info.name = rt.config.export_name;
      rt.info.description =
          fmt::format("v2p vdisk {}/{}", v.vm.empty() ? "<peer>" : v.vm, rt.config.vdisk);
      rt.info.size = rt.backend->size();
      rt.info.read_only = v.read_only || rt.backend->read_only();
      // The handshake advertises what the stack offers, not a fixed set.
      rt.info.min_block = rt.backend->min_block();
      rt.info.can_fua = rt.backend->can_fua();
      rt.info.can_trim = rt.backend->can_trim();
      rt.info.can_zero = rt.backend->can_zero();
      rt.info.can_multi_conn = rt.backend->can_multi_conn();
      ctx_.exports.push_back(std::move(rt));
    }
    // Vdisks of configured VMs are declared now, so consumers learn the names before any I/O.
    for (const auto& e : ctx_.exports) {
      if (!e.config.vm.empty()) {
        ctx_.registry.ids(e.config.vm, e.config.vdisk, e.data_path(), e.opaque_pids);
      }
    }
  }

  void close_listeners() {
    if (unix_fd_ >= 0) {
      ::close(unix_fd_);
      unix_fd_ = -1;
      ::unlink(unix_path_.c_str());
    }
    if (tcp_fd_ >= 0) {
      ::close(tcp_fd_);
      tcp_fd_ = -1;
    }
  }

  [[nodiscard]] bool needs_peer_identity() const {
    for (const auto& e : ctx_.exports) {
      if (e.config.vm.empty()) return true;
    }
    return false;
  }

  void accept_loop() noexcept {
    const bool identify = needs_peer_identity();
    for (;;) {
      pollfd fds[3] = {{stop_pipe_[0], POLLIN, 0}, {unix_fd_, POLLIN, 0}, {tcp_fd_, POLLIN, 0}};
      // The timeout only bounds how long finished connections wait to be joined.
      const int rc = ::poll(fds, 3, 1000);
      if (rc < 0 && errno != EINTR) return;
      if (fds[0].revents != 0) return;
      reap();
      for (int i = 1; i < 3; ++i) {
        if (fds[i].fd < 0 || (fds[i].revents & POLLIN) == 0) continue;
        sockaddr_storage peer{};
        socklen_t len = sizeof peer;
        const int fd = ::accept4(fds[i].fd, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
        if (fd < 0) continue;
        std::string vm;
        if (identify) vm = i == 1 ? discover_peer_vm(fd) : tcp_peer_name(peer);
        try {
          auto conn = std::make_unique<Connection>(ctx_, fd, std::move(vm));
          conn->start();
          ctx_.connections.fetch_add(1, std::memory_order_relaxed);
          std::lock_guard lock(conn_mu_);
          connections_.push_back(std::move(conn));
        } catch (const std::exception& e) {
          fmt::print(stderr, "v2p vfilter: cannot serve a new connection: {}\n", e.what());
        }
      }
    }
  }

  static std::string tcp_peer_name(const sockaddr_storage& peer) {
    char host[INET6_ADDRSTRLEN] = "unknown";
    if (peer.ss_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&peer)->sin_addr, host,
                  sizeof host);
    } else if (peer.ss_family == AF_INET6) {
      ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&peer)->sin6_addr, host,
                  sizeof host);
    }
    return fmt::format("tcp-{}", host);
  }

  void reap() {
    std::list<std::unique_ptr<Connection>> done;
    {
      std::lock_guard lock(conn_mu_);
      for (auto it = connections_.begin(); it != connections_.end();) {
        if ((*it)->finished()) {
          done.push_back(std::move(*it));
          it = connections_.erase(it);
        } else {
          ++it;
        }
      }
    }
    // Joined outside the lock.
  }

  ServerContext ctx_;
  ServerConfig config_;
  int unix_fd_ = -1;
  int tcp_fd_ = -1;
  std::uint16_t tcp_port_ = 0;
  std::filesystem::path unix_path_;
  int stop_pipe_[2] = {-1, -1};
  std::thread acceptor_;
  std::unique_ptr<vhost_user::Listener> vhost_user_;
  std::mutex stop_mu_;
  bool stopped_ = false;
  mutable std::mutex conn_mu_;
  std::list<std::unique_ptr<Connection>> connections_;
};

}  // namespace

std::unique_ptr<Server> Server::start(const ServerConfig& config, RecordSink* sink) {
  return std::make_unique<ServerImpl>(config, sink);
}

}  // namespace v2p::vfilter
