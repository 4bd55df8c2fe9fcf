// What a host's agent runs to be part of a cluster: its chunk service (its stores, to the
// others, over TLS) and its heartbeat (the alive key under a lease, carrying stores, free
// space, load and VMs). Both run on threads of their own: the agent's loop never waits for etcd
// or a peer, and an unreachable etcd at start is one log line and a retry, not a failure.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cluster/chunk_service.hpp"
#include "cluster/cluster_config.hpp"
#include "cluster/etcd_client.hpp"
#include "cluster/lease_keeper.hpp"

namespace v2p::cluster {

class Node {
 public:
  using Log = std::function<void(const std::string&)>;
  // Starts the chunk service (throws v2p::Error when it cannot listen) and the heartbeat.
  Node(ClusterConfig config, Log log);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // The VMs (and their devices) this host serves, published with the next heartbeat.
  void set_vms(std::vector<std::string> vms, std::vector<std::string> devices);
  // Registered and the lease is current (the write fence).
  [[nodiscard]] bool fresh() const { return keeper_->fresh(); }
  [[nodiscard]] const ClusterConfig& config() const noexcept { return cfg_; }

 private:
  [[nodiscard]] std::string alive_value();

  ClusterConfig cfg_;
  Log log_;
  std::unique_ptr<ChunkServer> server_;
  std::unique_ptr<EtcdClient> client_;
  std::mutex mu_;
  std::vector<std::string> vms_, devices_;
  bool member_written_ = false;
  std::int64_t started_ = 0;
  std::unique_ptr<LeaseKeeper> keeper_;  // last: its thread calls alive_value()
};

}  // namespace v2p::cluster
