// The ec pool across hosts, as the host that runs it (the gateway) sees it: every store every
// member host registered in etcd is a RemoteStore on that host's chunk service (the gateway's
// own stores too, through its own service, so the failure domain is the host everywhere). No
// store list to maintain: a host that joins with stores is placed on from its first heartbeat.
//
// Writes are fenced: a container is placed only while a linearizable read of the cluster's
// keys succeeds (at most one second old), so a gateway cut off from etcd never places data by a
// stale view of which hosts are up.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cluster/cluster_config.hpp"
#include "cluster/cluster_view.hpp"
#include "cluster/etcd_client.hpp"
#include "ec/pool.hpp"

namespace v2p::cluster {

class ClusterPool {
 public:
  // Throws v2p::Error (EtcdError when etcd cannot be read: no pool without a current view).
  explicit ClusterPool(const ClusterConfig& config);
  ~ClusterPool();
  ClusterPool(const ClusterPool&) = delete;
  ClusterPool& operator=(const ClusterPool&) = delete;

  [[nodiscard]] ec::Pool& pool() { return *pool_; }
  [[nodiscard]] const ClusterView& view() const { return *view_; }
  // Store ids of member hosts that are down now.
  [[nodiscard]] std::vector<std::uint32_t> stores_of_down_hosts() const;
  // Re-creates every chunk of the down hosts' stores on the hosts that are up (evacuation:
  // reads the survivors, decodes, writes elsewhere, logs the move). Progress per chunk.
  ec::RebuildReport rebuild_down_hosts(const ec::ProgressFn& progress = {});
  // Moves chunks from the fullest stores to the emptiest (after a host joined) until every
  // store is within one chunk of the mean, host failure domains respected.
  ec::RebuildReport rebalance(const ec::ProgressFn& progress = {});
  // A host that leaves: every chunk on its stores moves to the other hosts (it may still be
  // up), then its member record is deleted. Throws v2p::Error for a host that is no member;
  // the member record stays when a chunk could not be moved.
  ec::RebuildReport drain(const std::string& host, const ec::ProgressFn& progress = {});

 private:
  bool fresh_view();
  ec::RebuildReport evacuate_all(const std::vector<std::uint32_t>& stores,
                                 const ec::ProgressFn& progress);

  ClusterConfig cfg_;
  std::unique_ptr<EtcdClient> client_;
  std::shared_ptr<ClusterView> view_;
  std::chrono::steady_clock::time_point last_fresh_{};
  std::unique_ptr<ec::Pool> pool_;
};

}  // namespace v2p::cluster
