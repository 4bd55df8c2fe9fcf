// A small etcd v3 client over its gRPC API (KV, Lease; Watch in etcd_watch.hpp), for membership
// and placement keys. Every call has a deadline and fails with EtcdError rather than hang, so a
// caller on the agent's loop can report and retry. One channel to all endpoints (round robin):
// a member that is down is skipped by gRPC; a call that fails is tried once on the next member.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/error.hpp"

namespace grpc {
class Channel;
}

namespace v2p::cluster {

class EtcdError : public Error {
 public:
  using Error::Error;
};

struct KeyValue {
  std::string key;
  std::string value;
  std::int64_t create_revision = 0;
  std::int64_t mod_revision = 0;
  std::int64_t lease = 0;
};

struct RangeResult {
  std::vector<KeyValue> kvs;
  std::int64_t revision = 0;  // the store's revision the read saw (to start a watch after it)
};

struct Lease {
  std::int64_t id = 0;
  std::int64_t ttl_seconds = 0;
};

// "10.0.0.1:2379,10.0.0.2:2379" (or with http:// prefixes, as etcdctl takes them) -> list.
std::vector<std::string> parse_endpoints(const std::string& text);

// The end of the key range that holds every key starting with `prefix` (etcd's range_end).
std::string prefix_end(const std::string& prefix);

class EtcdClient {
 public:
  explicit EtcdClient(std::vector<std::string> endpoints,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  [[nodiscard]] const std::vector<std::string>& endpoints() const noexcept { return endpoints_; }
  [[nodiscard]] std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  [[nodiscard]] std::chrono::milliseconds timeout() const noexcept { return timeout_; }

  void put(const std::string& key, const std::string& value, std::int64_t lease = 0);
  [[nodiscard]] std::optional<KeyValue> get(const std::string& key);
  [[nodiscard]] RangeResult get_prefix(const std::string& prefix);
  // Number of keys deleted.
  std::int64_t erase(const std::string& key);
  std::int64_t erase_prefix(const std::string& prefix);
  // Transactions on revisions, never read-then-write: true when the write happened.
  bool put_if_absent(const std::string& key, const std::string& value, std::int64_t lease = 0);
  bool put_if_mod_revision(const std::string& key, const std::string& value,
                           std::int64_t mod_revision, std::int64_t lease = 0);

  Lease lease_grant(std::int64_t ttl_seconds);
  void lease_revoke(std::int64_t id);
  // One keep-alive round trip: the TTL etcd granted again, 0 when the lease is gone.
  std::int64_t lease_keepalive(std::int64_t id);
  // Seconds left, -1 when the lease is gone.
  std::int64_t lease_time_to_live(std::int64_t id);

  struct Stubs;  // the per-member gRPC stubs (etcd_client.cpp)

 private:
  std::vector<std::string> endpoints_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Stubs> stubs_;
};

}  // namespace v2p::cluster
