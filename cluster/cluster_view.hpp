// Every agent's live picture of the cluster: one read of the cluster's keys, then a watch that
// applies each change. A lost host shows as down the moment etcd expires its lease (the watch's
// DELETE), so detection time = the lease TTL (+ etcd's expiry slack), not a polling period.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "cluster/etcd_client.hpp"
#include "cluster/etcd_watch.hpp"
#include "cluster/membership.hpp"

namespace v2p::cluster {

class ClusterView {
 public:
  using OnChange = std::function<void(const std::string& host, bool up)>;
  // Reads the cluster now (throws EtcdError when etcd is unreachable) and watches it.
  ClusterView(EtcdClient& client, std::string cluster, OnChange on_change = {});
  ~ClusterView();
  ClusterView(const ClusterView&) = delete;
  ClusterView& operator=(const ClusterView&) = delete;

  [[nodiscard]] ClusterState snapshot() const;
  [[nodiscard]] bool up(const std::string& host) const;
  // A host being drained takes no new chunks (its stores probe as missing to placement) but
  // still serves reads of the chunks it holds.
  void mark_draining(const std::string& host);
  [[nodiscard]] bool draining(const std::string& host) const;
  // Steady-clock time the host was last seen going down (for detection figures), or zero.
  [[nodiscard]] std::chrono::steady_clock::time_point down_since(const std::string& host) const;

 private:
  void apply(const WatchEvent& e);
  void reload();

  EtcdClient& client_;
  std::string cluster_;
  OnChange on_change_;
  mutable std::mutex mu_;
  ClusterState state_;
  std::map<std::string, std::chrono::steady_clock::time_point> down_since_;
  std::set<std::string> draining_;
  std::unique_ptr<EtcdWatch> watch_;
};

}  // namespace v2p::cluster
