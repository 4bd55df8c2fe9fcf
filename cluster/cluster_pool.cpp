#include "cluster/cluster_pool.hpp"

#include <fmt/core.h>

#include <algorithm>

#include "cluster/remote_store.hpp"

namespace v2p::cluster {

ClusterPool::ClusterPool(const ClusterConfig& config) : cfg_(config) {
  if (cfg_.pool_metadata.empty()) {
    throw Error("the cluster configuration has no \"pool\": {\"metadata\": DIR} on this host");
  }
  client_ = std::make_unique<EtcdClient>(cfg_.etcd, std::chrono::milliseconds(1500));
  view_ = std::make_shared<ClusterView>(*client_, cfg_.cluster);
  last_fresh_ = std::chrono::steady_clock::now();
  ec::PoolConfig pc;
  pc.metadata_dir = cfg_.pool_metadata;
  pc.default_layout = cfg_.layout;
  pc.container_bytes = cfg_.container_bytes;
  pc.hedge_delay = std::chrono::milliseconds(cfg_.hedge_ms);
  // Hosts first; with fewer hosts up than k + m (after losses), a second store on a host.
  pc.allow_shared_domains = true;
  pc.may_place = [this] { return fresh_view(); };
  const auto state = view_->snapshot();
  for (const auto& [host, h] : state.hosts) {
    if (h.info.address.empty() || h.info.stores.empty()) continue;
    auto channel = peer_channel(h.info.address, host, cfg_.credentials);
    for (const auto& s : h.info.stores) {
      pc.stores.emplace_back(s.id, host + ":" + s.path,
                             std::make_shared<RemoteStore>(s.id, host, channel, view_));
    }
  }
  if (pc.stores.empty()) {
    throw Error(
        fmt::format("cluster '{}' has no host with stores registered in etcd yet", cfg_.cluster));
  }
  pool_ = std::make_unique<ec::Pool>(std::move(pc));
}

ClusterPool::~ClusterPool() {
  pool_.reset();
  view_.reset();
}

bool ClusterPool::fresh_view() {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_fresh_ < std::chrono::seconds(1)) return true;
  try {
    // Linearizable: only a member with a quorum answers, so success means the view is current.
    (void)read_cluster(*client_, cfg_.cluster);
    last_fresh_ = now;
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

std::vector<std::uint32_t> ClusterPool::stores_of_down_hosts() const {
  std::vector<std::uint32_t> out;
  for (const auto& [host, h] : view_->snapshot().hosts) {
    if (h.up) continue;
    for (const auto& s : h.info.stores) out.push_back(s.id);
  }
  return out;
}

ec::RebuildReport ClusterPool::rebuild_down_hosts(const ec::ProgressFn& progress) {
  return evacuate_all(stores_of_down_hosts(), progress);
}

ec::RebuildReport ClusterPool::drain(const std::string& host, const ec::ProgressFn& progress) {
  const auto state = view_->snapshot();
  auto it = state.hosts.find(host);
  if (it == state.hosts.end()) {
    throw Error(fmt::format("host '{}' is not a member of cluster '{}'", host, cfg_.cluster));
  }
  std::vector<std::uint32_t> stores;
  for (const auto& s : it->second.info.stores) stores.push_back(s.id);
  view_->mark_draining(host);  // or chunks leaving one of its stores could land on another
  auto rep = evacuate_all(stores, progress);
  if (rep.failed == 0) leave(*client_, cfg_.cluster, host);
  return rep;
}

ec::RebuildReport ClusterPool::evacuate_all(const std::vector<std::uint32_t>& stores,
                                            const ec::ProgressFn& progress) {
  ec::RebuildReport total;
  // Progress over all stores of all down hosts, not per store.
  std::uint64_t expected = 0;
  for (const auto& s : pool_->status().stores) {
    if (std::find(stores.begin(), stores.end(), s.id) != stores.end()) {
      expected += s.chunks_expected;
    }
  }
  std::uint64_t base = 0;
  for (auto id : stores) {
    auto rep = pool_->evacuate(id, [&](std::uint64_t done, std::uint64_t) {
      if (progress) progress(base + done, expected);
    });
    base += rep.chunks_rebuilt;
    total.chunks_total += rep.chunks_total;
    total.chunks_rebuilt += rep.chunks_rebuilt;
    total.failed += rep.failed;
    total.problems.insert(total.problems.end(), rep.problems.begin(), rep.problems.end());
  }
  return total;
}

ec::RebuildReport ClusterPool::rebalance(const ec::ProgressFn& progress) {
  return pool_->rebalance(progress);
}

}  // namespace v2p::cluster
