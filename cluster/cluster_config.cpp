#include "cluster/cluster_config.hpp"

#include <fmt/core.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "cluster/etcd_client.hpp"
#include "common/error.hpp"

namespace v2p::cluster {

ClusterConfig load_cluster_config(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw Error(fmt::format("{}: cannot read the cluster configuration", file.string()));
  ClusterConfig c;
  std::string field;
  try {
    auto j = nlohmann::json::parse(in);
    field = "cluster";
    c.cluster = j.value("cluster", c.cluster);
    field = "host";
    c.host = j.value("host", "");
    if (c.host.empty()) {
      char name[256] = {};
      ::gethostname(name, sizeof name - 1);
      c.host = name;
    }
    field = "etcd";
    c.etcd = parse_endpoints(j.at("etcd").get<std::string>());
    field = "ttl_seconds";
    c.ttl_seconds = j.value("ttl_seconds", c.ttl_seconds);
    if (c.ttl_seconds < 2 || c.ttl_seconds > 60) throw Error("must be 2..60 (etcd's minimum is 2)");
    field = "listen";
    c.listen = j.value("listen", "");
    field = "advertise";
    c.advertise = j.value("advertise", c.listen);
    field = "credentials";
    c.credentials = j.at("credentials").get<std::string>();
    field = "stores";
    for (const auto& s : j.value("stores", nlohmann::json::array())) {
      c.stores.emplace_back(s.at("id").get<std::uint32_t>(), s.at("path").get<std::string>());
    }
    if (!c.stores.empty() && c.listen.empty()) throw Error("stores need a 'listen' address");
    if (j.contains("pool")) {
      const auto& p = j.at("pool");
      field = "pool.metadata";
      c.pool_metadata = p.at("metadata").get<std::string>();
      field = "pool.layout";
      if (p.contains("layout")) c.layout = ec::parse_layout(p.at("layout").get<std::string>());
      field = "pool.container_bytes";
      c.container_bytes = p.value("container_bytes", c.container_bytes);
      field = "pool.hedge_ms";
      c.hedge_ms = p.value("hedge_ms", c.hedge_ms);
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(fmt::format("{}: field '{}': {}", file.string(), field, e.what()));
  } catch (const Error& e) {
    throw Error(fmt::format("{}: field '{}': {}", file.string(), field, e.what()));
  }
  return c;
}

}  // namespace v2p::cluster
