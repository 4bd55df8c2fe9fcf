#include "cluster/node.hpp"

#include <fmt/core.h>
#include <unistd.h>

#include <chrono>

#include "cluster/membership.hpp"
#include "ec/failure_domain.hpp"

namespace v2p::cluster {

Node::Node(ClusterConfig config, Log log) : cfg_(std::move(config)), log_(std::move(log)) {
  if (!cfg_.stores.empty()) {
    server_ = std::make_unique<ChunkServer>(cfg_.listen, cfg_.credentials, cfg_.stores);
    if (cfg_.advertise.empty()) cfg_.advertise = cfg_.listen;
  }
  started_ = std::chrono::duration_cast<std::chrono::seconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  client_ = std::make_unique<EtcdClient>(cfg_.etcd, std::chrono::milliseconds(1500));
  keeper_ = std::make_unique<LeaseKeeper>(
      *client_, alive_key(cfg_.cluster, cfg_.host), [this] { return alive_value(); },
      cfg_.ttl_seconds, log_);
}

Node::~Node() {
  keeper_.reset();
}

void Node::set_vms(std::vector<std::string> vms, std::vector<std::string> devices) {
  std::lock_guard lock(mu_);
  vms_ = std::move(vms);
  devices_ = std::move(devices);
}

// Runs on the heartbeat thread (so the etcd calls here never block the agent's loop).
std::string Node::alive_value() {
  HostInfo h;
  h.host = cfg_.host;
  h.address = cfg_.advertise;
  h.load = host_load();
  h.pid = static_cast<std::uint64_t>(::getpid());
  h.started_unix = started_;
  for (const auto& s : cfg_.stores) {
    StoreReport r;
    r.id = s.id;
    r.path = s.path.string();
    try {
      r.domain = ec::failure_domain_of(s.path).label();
    } catch (const std::exception&) {
      r.domain = "missing";
    }
    std::tie(r.free_bytes, r.total_bytes) = fs_space(s.path);
    h.stores.push_back(r);
  }
  {
    std::lock_guard lock(mu_);
    h.vms = vms_;
    h.devices = devices_;
  }
  if (!member_written_) {
    // The permanent record that makes a later absence "down" rather than "never was".
    join(*client_, cfg_.cluster, h);
    member_written_ = true;
  }
  return to_json(h);
}

}  // namespace v2p::cluster
