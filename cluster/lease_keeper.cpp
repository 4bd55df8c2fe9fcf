#include "cluster/lease_keeper.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace v2p::cluster {

namespace {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

LeaseKeeper::LeaseKeeper(EtcdClient& client, std::string key, Value value, std::int64_t ttl_seconds,
                         Log log, std::chrono::milliseconds refresh)
    : client_(client),
      key_(std::move(key)),
      value_(std::move(value)),
      ttl_(std::max<std::int64_t>(ttl_seconds, 2)),  // etcd's minimum with default timing
      log_(std::move(log)),
      refresh_(refresh) {
  thread_ = std::thread([this] { run(); });
}

LeaseKeeper::~LeaseKeeper() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (revoke_on_stop_ && lease_id_ != 0) {
    try {
      client_.lease_revoke(lease_id_);
    } catch (const std::exception&) {
      // etcd gone: the key expires with the TTL instead.
    }
  }
}

void LeaseKeeper::abandon() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    revoke_on_stop_ = false;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool LeaseKeeper::fresh() const {
  const auto last = last_ok_ns_.load();
  if (last == 0 || lease_id_ == 0) return false;
  // The lease was renewed at `last` for ttl seconds; keep a second of margin for clock steps
  // and the keep-alive's own round trip.
  const std::int64_t margin_ns = 1'000'000'000;
  return now_ns() - last < ttl_ * 1'000'000'000 - margin_ns;
}

void LeaseKeeper::sleep_for(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, d, [this] { return stop_.load(); });
}

void LeaseKeeper::run() {
  auto backoff = std::chrono::milliseconds(500);
  bool reported = false;
  auto last_keepalive = std::chrono::steady_clock::time_point{};
  std::string published;
  while (!stop_) {
    try {
      if (lease_id_ == 0) {
        const auto t0 = now_ns();
        auto lease = client_.lease_grant(ttl_);
        lease_id_ = lease.id;
        ++grants_;
        published = value_();
        client_.put(key_, published, lease.id);
        last_ok_ns_ = t0;
        last_keepalive = std::chrono::steady_clock::now();
        if (reported) log_(fmt::format("etcd reachable again: {} registered", key_));
        reported = false;
        backoff = std::chrono::milliseconds(500);
      }
      const auto now = std::chrono::steady_clock::now();
      // A keep-alive every third of the TTL: two can be lost before the lease runs out.
      if (now - last_keepalive >= std::chrono::milliseconds(ttl_ * 1000 / 3)) {
        const auto t0 = now_ns();
        if (client_.lease_keepalive(lease_id_) <= 0) {
          log_(fmt::format("etcd lease of {} expired; registering again", key_));
          lease_id_ = 0;
          last_ok_ns_ = 0;
          continue;
        }
        last_ok_ns_ = t0;
        last_keepalive = now;
      }
      auto value = value_();
      if (value != published) {
        client_.put(key_, value, lease_id_);
        published = std::move(value);
      }
      sleep_for(std::min(refresh_, std::chrono::milliseconds(ttl_ * 1000 / 6)));
    } catch (const std::exception& e) {
      if (!reported) {
        log_(
            fmt::format("etcd unreachable ({}): {}; retrying with backoff, local service "
                        "unaffected",
                        fmt::join(client_.endpoints(), ","), e.what()));
        reported = true;
      }
      sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(8000));
    }
  }
}

}  // namespace v2p::cluster
