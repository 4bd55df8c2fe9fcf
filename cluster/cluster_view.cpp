#include "cluster/cluster_view.hpp"

namespace v2p::cluster {

ClusterView::ClusterView(EtcdClient& client, std::string cluster, OnChange on_change)
    : client_(client), cluster_(std::move(cluster)), on_change_(std::move(on_change)) {
  state_ = read_cluster(client_, cluster_);
  watch_ = std::make_unique<EtcdWatch>(
      client_, cluster_prefix(cluster_), state_.revision, [this](const WatchEvent& e) { apply(e); },
      [this] { reload(); });
}

ClusterView::~ClusterView() {
  watch_.reset();
}

ClusterState ClusterView::snapshot() const {
  std::lock_guard lock(mu_);
  return state_;
}

bool ClusterView::up(const std::string& host) const {
  std::lock_guard lock(mu_);
  auto it = state_.hosts.find(host);
  return it != state_.hosts.end() && it->second.up;
}

std::chrono::steady_clock::time_point ClusterView::down_since(const std::string& host) const {
  std::lock_guard lock(mu_);
  auto it = down_since_.find(host);
  return it == down_since_.end() ? std::chrono::steady_clock::time_point{} : it->second;
}

void ClusterView::mark_draining(const std::string& host) {
  std::lock_guard lock(mu_);
  draining_.insert(host);
}

bool ClusterView::draining(const std::string& host) const {
  std::lock_guard lock(mu_);
  return draining_.count(host) != 0;
}

void ClusterView::reload() {
  ClusterState fresh;
  try {
    fresh = read_cluster(client_, cluster_);
  } catch (const std::exception&) {
    return;  // the watch keeps going; the next event or resync brings it back
  }
  std::lock_guard lock(mu_);
  state_ = std::move(fresh);
}

void ClusterView::apply(const WatchEvent& e) {
  const auto prefix = cluster_prefix(cluster_);
  if (e.kv.key.size() <= prefix.size()) return;
  const auto rest = e.kv.key.substr(prefix.size());
  std::string host;
  bool changed_up = false, now_up = false;
  {
    std::lock_guard lock(mu_);
    state_.revision = e.kv.mod_revision;
    if (rest.rfind("alive/", 0) == 0) {
      host = rest.substr(6);
      auto& h = state_.hosts[host];
      const bool was_up = h.up;
      if (e.type == WatchEvent::Type::kPut) {
        try {
          h.info = host_from_json(e.kv.value);
        } catch (const std::exception&) {
          return;
        }
        h.up = true;
        h.lease = e.kv.lease;
      } else {
        h.up = false;
        down_since_[host] = std::chrono::steady_clock::now();
      }
      changed_up = was_up != h.up;
      now_up = h.up;
    } else if (rest.rfind("members/", 0) == 0) {
      host = rest.substr(8);
      if (e.type == WatchEvent::Type::kDelete) {
        state_.hosts.erase(host);  // left the cluster for good
      } else if (!state_.hosts[host].up) {
        try {
          state_.hosts[host].info = host_from_json(e.kv.value);
        } catch (const std::exception&) {
        }
      }
    }
  }
  if (changed_up && on_change_) on_change_(host, now_up);
}

}  // namespace v2p::cluster
