#include "cluster/membership.hpp"

#include <fmt/core.h>

#include <fstream>
#include <nlohmann/json.hpp>

namespace v2p::cluster {

using nlohmann::json;

std::string to_json(const HostInfo& h) {
  json stores = json::array();
  for (const auto& s : h.stores) {
    stores.push_back({{"id", s.id},
                      {"path", s.path},
                      {"domain", s.domain},
                      {"free_bytes", s.free_bytes},
                      {"total_bytes", s.total_bytes},
                      {"chunks", s.chunks}});
  }
  return json{{"host", h.host},       {"address", h.address},
              {"devices", h.devices}, {"stores", stores},
              {"vms", h.vms},         {"load", h.load},
              {"pid", h.pid},         {"started_unix", h.started_unix}}
      .dump();
}

HostInfo host_from_json(const std::string& text) {
  try {
    auto j = json::parse(text);
    HostInfo h;
    h.host = j.at("host").get<std::string>();
    h.address = j.value("address", "");
    h.devices = j.value("devices", std::vector<std::string>{});
    h.vms = j.value("vms", std::vector<std::string>{});
    h.load = j.value("load", 0.0);
    h.pid = j.value("pid", std::uint64_t{0});
    h.started_unix = j.value("started_unix", std::int64_t{0});
    for (const auto& s : j.value("stores", json::array())) {
      StoreReport r;
      r.id = s.at("id").get<std::uint32_t>();
      r.path = s.value("path", "");
      r.domain = s.value("domain", "");
      r.free_bytes = s.value("free_bytes", std::uint64_t{0});
      r.total_bytes = s.value("total_bytes", std::uint64_t{0});
      r.chunks = s.value("chunks", std::uint64_t{0});
      h.stores.push_back(r);
    }
    return h;
  } catch (const json::exception& e) {
    throw Error(fmt::format("malformed host record in etcd: {}", e.what()));
  }
}

std::string cluster_prefix(const std::string& cluster) {
  return "/v2p/" + cluster + "/";
}

std::string member_key(const std::string& cluster, const std::string& host) {
  return cluster_prefix(cluster) + "members/" + host;
}

std::string alive_key(const std::string& cluster, const std::string& host) {
  return cluster_prefix(cluster) + "alive/" + host;
}

ClusterState read_cluster(EtcdClient& client, const std::string& cluster) {
  const auto prefix = cluster_prefix(cluster);
  auto range = client.get_prefix(prefix);
  ClusterState state;
  state.revision = range.revision;
  for (const auto& kv : range.kvs) {
    const auto rest = kv.key.substr(prefix.size());
    if (rest.rfind("members/", 0) == 0) {
      auto& h = state.hosts[rest.substr(8)];
      if (!h.up) h.info = host_from_json(kv.value);
    } else if (rest.rfind("alive/", 0) == 0) {
      auto& h = state.hosts[rest.substr(6)];
      h.info = host_from_json(kv.value);
      h.up = true;
      h.lease = kv.lease;
    }
  }
  return state;
}

void join(EtcdClient& client, const std::string& cluster, const HostInfo& host) {
  HostInfo record;  // only what identifies the host: the live details are in alive/
  record.host = host.host;
  record.address = host.address;
  record.started_unix = host.started_unix;
  record.stores = host.stores;  // so a pool still knows a down host's stores
  client.put(member_key(cluster, host.host), to_json(record));
}

void leave(EtcdClient& client, const std::string& cluster, const std::string& host) {
  client.erase(member_key(cluster, host));
  client.erase(alive_key(cluster, host));
}

double host_load() {
  std::ifstream in("/proc/loadavg");
  double load = 0;
  in >> load;
  return in ? load : 0.0;
}

}  // namespace v2p::cluster
