#include "cli/demo_agent.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/agent_client.hpp"
#include "agent/observation_json.hpp"
#include "cli/top_model.hpp"
#include "common/error.hpp"

namespace v2p::cli {
namespace {

bool port_free(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

DemoAgent::DemoAgent(const std::filesystem::path& dir)
    : ingest_(dir / "ingest.sock"), query_(dir / "agent.sock") {
  agent::AgentOptions o;
  o.query_socket = query_;
  o.ingest_socket = ingest_;
  o.socket_mode = 0600;
  o.state_dir.clear();
  o.pin_dir.clear();  // the chain's own probe holds the pins
  o.log = [this](std::string_view line) {
    if (line.starts_with("probe attached")) probed_ = true;
  };
  // 9391 when free (the address an operator knows), else any free port.
  o.http_listen = port_free(9391) ? agent::kDefaultHttpListen : "127.0.0.1:0";
  agent_ = std::make_unique<agent::Agent>(o);
  web_ = agent_->http_address();
  thread_ = std::thread([this] {
    while (!stop_) agent_->round(20);
  });
}

DemoAgent::~DemoAgent() {
  stop_ = true;
  thread_.join();
}

bool DemoAgent::wait_for_probe(std::chrono::milliseconds timeout) const {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (!probed_ && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return probed_;
}

std::vector<std::string> DemoAgent::top_lines() {
  agent::Observation cur;
  try {
    cur = agent::observation_from_json(agent::query_agent(query_, {{"op", "stats"}}, 2000));
  } catch (const std::exception&) {
    return {};
  }
  const double s = cur.taken_ns > prev_.taken_ns && prev_.taken_ns != 0
                       ? static_cast<double>(cur.taken_ns - prev_.taken_ns) * 1e-9
                       : 0;
  auto lines = cli::top_lines(top_model(prev_, cur, s, TopSort::kName), false, 140);
  prev_ = std::move(cur);
  return lines;
}

}  // namespace v2p::cli
