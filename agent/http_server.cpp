#include "agent/http_server.hpp"

#include <fmt/core.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <vector>

// Debian's cpp-httplib is a compiled library: its built-in limits (8 KiB request line, 8 KiB
// per header line, 100 headers) hold; requests with a body over max_request_bytes get 413.
#include <httplib.h>

#include "common/error.hpp"

namespace v2p::agent {
namespace {

// httplib's ThreadPool queues without bound; this one makes the acceptor wait instead.
class BoundedPool final : public httplib::TaskQueue {
 public:
  BoundedPool(std::size_t workers, std::size_t max_queued) : max_queued_(max_queued) {
    for (std::size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
  }
  ~BoundedPool() override { shutdown(); }
  void enqueue(std::function<void()> fn) override {
    std::unique_lock lock(mu_);
    room_.wait(lock, [this] { return queue_.size() < max_queued_ || stop_; });
    queue_.push_back(std::move(fn));
    ready_.notify_one();
  }
  void shutdown() override {
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
      stop_ = true;
    }
    ready_.notify_all();
    room_.notify_all();
    for (auto& t : threads_) t.join();
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock lock(mu_);
        ready_.wait(lock, [this] { return !queue_.empty() || stop_; });
        if (queue_.empty()) return;  // stopping, and everything accepted was served
        fn = std::move(queue_.front());
        queue_.pop_front();
      }
      room_.notify_one();
      fn();
    }
  }

  std::size_t max_queued_;
  std::mutex mu_;
  std::condition_variable ready_, room_;
  std::deque<std::function<void()>> queue_;
  std::vector<std::thread> threads_;
  bool stop_ = false;
};

}  // namespace

HttpAddress parse_http_address(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    throw Error(fmt::format("HTTP address '{}' must be HOST:PORT, e.g. 127.0.0.1:9391", text));
  }
  HttpAddress a;
  a.host = text.substr(0, colon);
  if (a.host.size() > 2 && a.host.front() == '[' && a.host.back() == ']') {
    a.host = a.host.substr(1, a.host.size() - 2);
  }
  const std::string port = text.substr(colon + 1);
  std::size_t used = 0;
  try {
    a.port = std::stoi(port, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != port.size() || a.port < 0 || a.port > 65535) {
    throw Error(fmt::format("HTTP address '{}': the port must be 0..65535", text));
  }
  return a;
}

struct HttpServer::Impl {
  httplib::Server server;
};

HttpServer::HttpServer(const std::string& listen, AgentJobs& jobs, HttpHandler handler,
                       HttpLimits limits)
    : impl_(std::make_unique<Impl>()) {
  const HttpAddress a = parse_http_address(listen);
  auto& s = impl_->server;
  const std::size_t workers = limits.workers, queued = limits.max_queued;
  s.new_task_queue = [workers, queued] { return new BoundedPool(workers, queued); };
  s.set_payload_max_length(limits.max_request_bytes);
  s.set_read_timeout(limits.io_timeout);
  s.set_write_timeout(limits.io_timeout);
  s.set_keep_alive_max_count(100);
  s.set_keep_alive_timeout(limits.io_timeout.count());
  const auto answer_timeout = limits.answer_timeout;
  s.Get(R"(/.*)", [&jobs, handler, answer_timeout](const httplib::Request& req,
                                                   httplib::Response& res) {
    HttpParams params;
    for (const auto& [k, v] : req.params) params.emplace(k, v);
    const std::string path = req.path;
    auto a = jobs.call([&handler, path, params] { return handler(path, params); }, answer_timeout);
    if (!a) a = HttpAnswer{503, "text/plain; charset=utf-8", "the agent is busy; try again\n"};
    res.status = a->status;
    res.body = std::move(a->body);  // not set_content: it copies (10 MB for 1 000 vdisks)
    res.set_header("Content-Type", a->content_type);
  });
  int port = a.port;
  if (port == 0) {
    port = s.bind_to_any_port(a.host);
    if (port < 0) throw Error(fmt::format("HTTP: cannot bind {}", listen));
  } else if (!s.bind_to_port(a.host, port)) {
    throw Error(
        fmt::format("HTTP: cannot bind {} (in use, or not an address of this host)", listen));
  }
  address_ = a.host.find(':') != std::string::npos ? fmt::format("[{}]:{}", a.host, port)
                                                   : fmt::format("{}:{}", a.host, port);
  thread_ = std::thread([this] { impl_->server.listen_after_bind(); });
  // stop() before the loop runs would be lost (httplib only stops a running server).
  while (!impl_->server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

HttpServer::~HttpServer() {
  impl_->server.stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace v2p::agent
