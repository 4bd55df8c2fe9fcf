#include "agent/agent_client.hpp"

#include <fmt/core.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "agent/query_protocol.hpp"
#include "agent/unix_listener.hpp"
#include "common/clock.hpp"
#include "common/error.hpp"

namespace v2p::agent {

nlohmann::json query_agent(const std::filesystem::path& socket, nlohmann::json request,
                           int timeout_ms) {
  request["v"] = kQueryProtocolVersion;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string p = socket.string();
  if (p.size() >= sizeof addr.sun_path) throw Error(fmt::format("socket path too long: {}", p));
  std::memcpy(addr.sun_path, p.c_str(), p.size() + 1);
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) throw system_error("socket");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    throw AgentUnreachable(fmt::format(
        "cannot reach the v2p agent at {}: {} (is `v2p agent` running? offline: --stream or "
        "--snapshot)",
        p, std::strerror(errno)));
  }
  const std::string line = request.dump() + "\n";
  if (::send(fd.get(), line.data(), line.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(line.size())) {
    throw system_error(fmt::format("send to {}", p));
  }
  std::string in;
  const std::uint64_t deadline = monotonic_ns() + std::uint64_t(timeout_ms) * 1'000'000;
  char buf[65536];
  while (in.find('\n') == std::string::npos) {
    const std::uint64_t now = monotonic_ns();
    if (now >= deadline) throw Error(fmt::format("the v2p agent at {} did not answer in time", p));
    pollfd pfd{fd.get(), POLLIN, 0};
    ::poll(&pfd, 1, static_cast<int>((deadline - now) / 1'000'000) + 1);
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) throw Error(fmt::format("the v2p agent at {} closed the connection", p));
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      throw system_error(fmt::format("receive from {}", p));
    }
    in.append(buf, static_cast<std::size_t>(n));
  }
  auto answer = nlohmann::json::parse(in.substr(0, in.find('\n')), nullptr, false);
  if (answer.is_discarded() || !answer.is_object()) {
    throw Error(fmt::format("the v2p agent at {} sent an unreadable answer", p));
  }
  if (!answer.value("ok", false)) {
    throw Error(answer.value("error", std::string("the agent refused the request")));
  }
  return answer;
}

}  // namespace v2p::agent
