// A host's cluster configuration (JSON; docs/cluster.md), read by `v2p agent --cluster FILE`
// and by the `v2p cluster` commands:
//   {"cluster": "c1", "host": "h1", "etcd": "10.0.0.11:2379,10.0.0.12:2379",
//    "ttl_seconds": 3, "listen": "10.0.0.21:7420", "credentials": "/etc/v2p/cluster/h1",
//    "stores": [{"id": 11, "path": "/srv/disk1/v2p"}],
//    "pool": {"metadata": "/var/lib/v2p/ec", "layout": "2+2"}}
// "stores" are this host's, served to the others; "pool" is only needed where the pool runs.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "ec/config.hpp"

namespace v2p::cluster {

struct ClusterConfig {
  std::string cluster = "v2p";
  std::string host;  // default: the machine's host name
  std::vector<std::string> etcd;
  int ttl_seconds = 3;
  std::string listen;     // chunk service address (HOST:PORT), empty = serve no stores
  std::string advertise;  // what the others dial, default = listen
  std::filesystem::path credentials;
  std::vector<ec::StoreConfig> stores;
  std::filesystem::path pool_metadata;
  ec::Layout layout{2, 1};
  std::uint32_t container_bytes = 4u << 20;
  int hedge_ms = 50;  // data chunks slower than this: read the fastest k of k + m instead
};

// Throws v2p::Error "FILE: field 'X' …".
ClusterConfig load_cluster_config(const std::filesystem::path& file);

}  // namespace v2p::cluster
