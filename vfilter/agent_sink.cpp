#include "vfilter/agent_sink.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <exception>

#include "common/error.hpp"
#include "common/fd_passing.hpp"
#include "common/ingest_wire.hpp"

namespace v2p::vfilter {
namespace {

// How long one send may wait for a stalled (stopped, not dead) agent before the sender checks
// whether it should stop; records keep queueing (and dropping when full) meanwhile.
constexpr timeval kSendTimeout{0, 200'000};
constexpr std::size_t kBatchRecords = 512;

bool send_message(int fd, std::span<const std::byte> bytes) {
  for (;;) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(bytes.size())) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;  // EAGAIN (timeout), EPIPE, ECONNRESET: the caller reconnects
  }
}

}  // namespace

AgentSink::AgentSink(AgentSinkOptions options) : options_(std::move(options)) {
  ring_.resize(options_.queue_records == 0 ? 1 : options_.queue_records);
  sender_ = std::thread([this] { run(); });
}

AgentSink::~AgentSink() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  sender_.join();
  if (pending_grant_fd_ >= 0) ::close(pending_grant_fd_);
}

void AgentSink::declare(const VdiskDeclaration& d) {
  if (options_.next != nullptr) options_.next->declare(d);
  {
    std::lock_guard lock(mu_);
    declarations_.push_back(d);
  }
  wake_.notify_one();
}

void AgentSink::declare_backend(const BackendProcess& b) {
  if (options_.next != nullptr) options_.next->declare_backend(b);
  {
    std::lock_guard lock(mu_);
    backends_.push_back(b);
  }
  wake_.notify_one();
}

void AgentSink::publish(const ContextRecord& r) noexcept {
  if (options_.next != nullptr) options_.next->publish(r);
  bool was_empty = false;
  {
    std::lock_guard lock(mu_);
    if (count_ == ring_.size()) {
      lost_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    ring_[(head_ + count_) % ring_.size()] = r;
    was_empty = count_++ == 0;
  }
  if (was_empty) wake_.notify_one();
}

void AgentSink::announce_image(const std::string& path) {
  std::lock_guard lock(mu_);
  images_.push_back(path);
}

AgentSinkStats AgentSink::stats() const {
  return {sent_.load(), lost_.load(), connections_.load(), connected_.load()};
}

int AgentSink::connect_once() {
  const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = options_.socket.string();
  if (path.size() >= sizeof addr.sun_path) {
    ::close(fd);
    return -1;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &kSendTimeout, sizeof kSendTimeout);
  return fd;
}

// Sends new declarations, then up to one batch of records. Returns false when the connection
// failed (the records taken for the batch are counted as lost).
bool AgentSink::send_batch(int fd, std::size_t& declared, std::size_t& backends_sent) {
  ingest::MessageBuilder msg;
  std::size_t taken = 0;
  {
    std::unique_lock lock(mu_);
    // Declarations always go before the records that name them.
    while (declared < declarations_.size() && msg.append(declarations_[declared])) ++declared;
    while (backends_sent < backends_.size() && msg.append(backends_[backends_sent]))
      ++backends_sent;
    if (declared == declarations_.size() && backends_sent == backends_.size()) {
      while (count_ > 0 && taken < kBatchRecords && msg.append(ring_[head_])) {
        head_ = (head_ + 1) % ring_.size();
        --count_;
        ++taken;
      }
    }
  }
  if (msg.empty()) return true;
  if (!send_message(fd, msg.bytes())) {
    lost_.fetch_add(taken, std::memory_order_relaxed);
    return false;
  }
  sent_.fetch_add(taken, std::memory_order_relaxed);
  return true;
}

void AgentSink::on_slot_table(std::function<void(int, std::uint32_t)> handler) {
  std::lock_guard lock(grant_mu_);
  grant_handler_ = std::move(handler);
  if (pending_grant_fd_ >= 0 && grant_handler_) {
    try {
      grant_handler_(pending_grant_fd_, pending_grant_row_);
    } catch (const std::exception&) {
      // A table that cannot be mapped: this export's repeats are sent, nothing else changes.
    }
    ::close(pending_grant_fd_);
    pending_grant_fd_ = -1;
  }
}

void AgentSink::deliver_grant(int map_fd, std::uint32_t row) {
  std::lock_guard lock(grant_mu_);
  if (!grant_handler_) {
    if (pending_grant_fd_ >= 0) ::close(pending_grant_fd_);
    pending_grant_fd_ = map_fd;
    pending_grant_row_ = row;
    return;
  }
  try {
    grant_handler_(map_fd, row);
  } catch (const std::exception&) {
    // As above: without the table, nothing is suppressed and nothing is wrong.
  }
  ::close(map_fd);
}

// Takes the agent's grants waiting on the socket. False when the agent closed the connection or
// broke the protocol (the caller reconnects).
bool AgentSink::receive_grants(int fd) {
  std::array<std::byte, 64> buf{};
  for (;;) {
    int map_fd = -1;
    const ssize_t n = recv_with_fd(fd, buf, &map_fd, MSG_DONTWAIT);
    if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
    if (n == 0) return false;
    try {
      const auto grant = ingest::parse_grant({buf.data(), static_cast<std::size_t>(n)});
      if (map_fd < 0) return false;  // a grant without its table
      deliver_grant(map_fd, grant.row);
    } catch (const Error&) {
      if (map_fd >= 0) ::close(map_fd);
      return false;
    }
  }
}

// Cumulative figures: a message lost with a connection costs resolution, not counts.
bool AgentSink::send_timings(int fd) {
  if (!options_.timings) return true;
  ingest::MessageBuilder msg;
  for (const auto& l : timings_.snapshot()) {
    if (msg.append(l)) continue;
    if (!send_message(fd, msg.bytes())) return false;
    msg.clear();
    msg.append(l);
  }
  return msg.empty() || send_message(fd, msg.bytes());
}

void AgentSink::run() {
  auto backoff = options_.min_backoff;
  for (;;) {
    const int fd = connect_once();
    if (fd < 0) {
      // Agent away: whatever was queued can never be joined any more; count it, then wait.
      std::unique_lock lock(mu_);
      lost_.fetch_add(count_, std::memory_order_relaxed);
      count_ = 0;
      if (wake_.wait_for(lock, backoff, [this] { return stopping_; })) return;
      backoff = std::min(backoff * 2, options_.max_backoff);
      continue;
    }
    backoff = options_.min_backoff;
    {
      // Records queued before this connection existed are of I/O no agent watched: lost.
      std::lock_guard lock(mu_);
      lost_.fetch_add(count_, std::memory_order_relaxed);
      count_ = 0;
    }
    connections_.fetch_add(1);
    connected_ = true;
    ingest::MessageBuilder hello;
    hello.append(ingest::Hello{ingest::kProtocolVersion, static_cast<std::uint32_t>(::getpid())});
    hello.append(ingest::LostRecords{lost_.load()});
    {
      std::lock_guard lock(mu_);
      for (const auto& image : images_) hello.append_image(image);
    }
    bool ok = send_message(fd, hello.bytes());
    std::size_t declared = 0, backends_sent = 0;
    std::uint64_t lost_reported = lost_.load();
    auto next_timings = std::chrono::steady_clock::now();
    while (ok) {
      {
        std::unique_lock lock(mu_);
        wake_.wait_for(lock, std::chrono::milliseconds(5), [&] {
          return stopping_ || count_ > 0 || declared < declarations_.size() ||
                 backends_sent < backends_.size();
        });
        if (stopping_ && count_ == 0) break;
      }
      ok = send_batch(fd, declared, backends_sent) && receive_grants(fd);
      const std::uint64_t lost_now = lost_.load();
      if (ok && lost_now != lost_reported) {
        ingest::MessageBuilder m;
        m.append(ingest::LostRecords{lost_now});
        ok = send_message(fd, m.bytes());
        lost_reported = lost_now;
      }
      // After the batch: the declarations the timings name have gone first.
      if (ok && std::chrono::steady_clock::now() >= next_timings) {
        ok = send_timings(fd);
        next_timings = std::chrono::steady_clock::now() + options_.timings_interval;
      }
      bool stop = false;
      {
        std::lock_guard lock(mu_);
        stop = stopping_ && count_ == 0;
      }
      if (stop) break;
    }
    connected_ = false;
    ::close(fd);
    std::lock_guard lock(mu_);
    if (stopping_) return;
  }
}

}  // namespace v2p::vfilter
