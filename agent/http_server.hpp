// The agent's HTTP server (cpp-httplib): /metrics, the web page and its JSON. Every request is
// answered on the agent's thread through AgentJobs, so the server holds no agent state. Limits:
// a request line plus headers of at most max_request_bytes, no request bodies, at most
// `workers` requests served and `max_queued` accepted connections waiting (the acceptor then
// stops accepting: more wait in the kernel's backlog), and a read/write timeout per connection.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "agent/agent_jobs.hpp"

namespace v2p::agent {

struct HttpLimits {
  std::size_t max_request_bytes = 8192;
  std::size_t workers = 8;
  std::size_t max_queued = 32;
  // Also how long a connection may stay idle: an idle client holds a worker at most this long.
  std::chrono::seconds io_timeout{2};
  std::chrono::milliseconds answer_timeout{5000};  // agent busy longer: 503
};

using HttpParams = std::map<std::string, std::string>;
using HttpHandler = std::function<HttpAnswer(const std::string& path, const HttpParams& params)>;

// "HOST:PORT" (port 0: any free one). Throws v2p::Error with the reason.
struct HttpAddress {
  std::string host;
  int port = 0;
};
[[nodiscard]] HttpAddress parse_http_address(const std::string& text);

class HttpServer {
 public:
  // Binds (throws v2p::Error when it cannot) and serves from a thread of its own.
  HttpServer(const std::string& listen, AgentJobs& jobs, HttpHandler handler,
             HttpLimits limits = {});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // "HOST:PORT" actually bound.
  [[nodiscard]] const std::string& address() const noexcept { return address_; }

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  std::string address_;
  std::thread thread_;
};

}  // namespace v2p::agent
