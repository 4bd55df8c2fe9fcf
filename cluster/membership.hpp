// The cluster's keys in etcd, under /v2p/<cluster>/:
//   members/<host>  permanent: the host joined (written once by put_if_absent, removed on leave)
//   alive/<host>    under the host's lease (the heartbeat): address, stores, free space, load,
//                   VMs; gone within the TTL of the agent's death or isolation
// A host is up while its alive key exists, down while only its member key does.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cluster/etcd_client.hpp"

namespace v2p::cluster {

struct StoreReport {
  std::uint32_t id = 0;
  std::string path;
  std::string domain;  // the disk within the host
  std::uint64_t free_bytes = 0;
  std::uint64_t total_bytes = 0;
  std::uint64_t chunks = 0;
};

struct HostInfo {
  std::string host;
  std::string address;  // HOST:PORT of its chunk service, empty when it serves none
  std::vector<std::string> devices;
  std::vector<StoreReport> stores;
  std::vector<std::string> vms;
  double load = 0;  // 1-minute load average of the host
  std::uint64_t pid = 0;
  std::int64_t started_unix = 0;
};

std::string to_json(const HostInfo& h);
HostInfo host_from_json(const std::string& text);  // throws v2p::Error

std::string cluster_prefix(const std::string& cluster);
std::string member_key(const std::string& cluster, const std::string& host);
std::string alive_key(const std::string& cluster, const std::string& host);

struct HostState {
  HostInfo info;  // the last alive value, or the member record when down
  bool up = false;
  std::int64_t lease = 0;
};

struct ClusterState {
  std::int64_t revision = 0;
  std::map<std::string, HostState> hosts;
};

// One consistent read of members/ and alive/ (a single range over the cluster prefix).
ClusterState read_cluster(EtcdClient& client, const std::string& cluster);

// Records the host as a member (once); the heartbeat (LeaseKeeper on alive_key) does the rest.
void join(EtcdClient& client, const std::string& cluster, const HostInfo& host);
// Removes the member record: the host is gone for good, not down (after its data was drained).
void leave(EtcdClient& client, const std::string& cluster, const std::string& host);

// This machine's 1-minute load average (from /proc/loadavg), 0 when unreadable.
double host_load();

}  // namespace v2p::cluster
