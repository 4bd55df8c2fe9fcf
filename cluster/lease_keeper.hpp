// The heartbeat: one etcd lease kept alive by one thread, and one key under it whose value the
// owner refreshes. If the agent dies, the key goes with the lease within the TTL: that is how the
// others see a host down. If etcd cannot be reached, one line says so and the thread retries
// with backoff (0.5 s doubling to 8 s); nothing else on the host waits for it.
//
// fresh() is the fence for writes: true only while the last successful keep-alive is younger
// than the TTL less a margin, so a host cut off from etcd stops placing new data before the
// others can have declared it down and moved its work (the split case).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "cluster/etcd_client.hpp"

namespace v2p::cluster {

class LeaseKeeper {
 public:
  using Value = std::function<std::string()>;
  using Log = std::function<void(const std::string&)>;

  LeaseKeeper(EtcdClient& client, std::string key, Value value, std::int64_t ttl_seconds, Log log,
              std::chrono::milliseconds refresh = std::chrono::milliseconds(1000));
  // Revokes the lease (the key disappears at once: a clean leave, not a failure).
  ~LeaseKeeper();
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  [[nodiscard]] bool fresh() const;
  [[nodiscard]] std::int64_t lease_id() const noexcept { return lease_id_; }
  // Leases granted so far (a lost lease is replaced by a new one).
  [[nodiscard]] std::uint64_t grants() const noexcept { return grants_; }
  // Stops the thread without revoking: the key expires with the TTL, as after a crash.
  void abandon();

 private:
  void run();
  void sleep_for(std::chrono::milliseconds d);

  EtcdClient& client_;
  std::string key_;
  Value value_;
  std::int64_t ttl_;
  Log log_;
  std::chrono::milliseconds refresh_;
  std::atomic<std::int64_t> lease_id_{0};
  std::atomic<std::uint64_t> grants_{0};
  std::atomic<std::int64_t> last_ok_ns_{0};
  std::atomic<bool> stop_{false};
  bool revoke_on_stop_ = true;
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
};

}  // namespace v2p::cluster
