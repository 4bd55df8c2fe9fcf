// An ec store that another host's agent serves (ChunkServer), seen by the pool as a Store like
// any directory. Failure domain = the host: no two chunks of a container on one host while
// enough hosts are up (with allow_shared_domains, then spread over the least used hosts, never
// two on one store). Calls fail fast — no network round trip — while the cluster view has the
// host down, so a lost host costs a read nothing and a rebuild no timeouts.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include "cluster/cluster_view.hpp"
#include "ec/store.hpp"

namespace grpc {
class Channel;
}

namespace v2p::cluster {

class PeerChannels;

class RemoteStore final : public ec::StoreBackend {
 public:
  // `view` may be null (the host is then taken as up; tests and `v2p ec` without etcd).
  RemoteStore(std::uint32_t store, std::string host, std::shared_ptr<grpc::Channel> channel,
              std::shared_ptr<const ClusterView> view);
  ~RemoteStore() override;

  [[nodiscard]] ec::Store::State probe(std::uint64_t pool_id) const override;
  void adopt(std::uint64_t pool_id) const override;
  ec::Result<bool> write_chunk(const ec::ChunkHeader& header,
                               std::span<const std::uint8_t> payload) const override;
  ec::Result<std::vector<std::uint8_t>> read_chunk(const ec::ChunkExpect& expect) const override;
  ec::Result<std::vector<std::uint8_t>> read_range(const ec::ChunkExpect& expect,
                                                   std::uint32_t offset,
                                                   std::uint32_t len) const override;
  [[nodiscard]] bool has_chunk(const ec::ChunkExpect& expect) const override;
  void remove_chunk(std::uint64_t container_id, std::uint8_t index) const noexcept override;
  [[nodiscard]] std::vector<ec::StoredChunk> list_chunks() const override;
  [[nodiscard]] ec::FailureDomain failure_domain() const override;
  [[nodiscard]] std::uint64_t placement_penalty() const override;

  [[nodiscard]] const std::string& host() const noexcept { return host_; }

  struct Stub;

 private:
  [[nodiscard]] bool host_down() const;

  std::uint32_t store_;
  std::string host_;
  std::shared_ptr<const ClusterView> view_;
  std::unique_ptr<Stub> stub_;
};

// A TLS channel to a peer's chunk service at `address`, checking that its certificate names
// `host` (a peer presenting another host's certificate is refused).
std::shared_ptr<grpc::Channel> peer_channel(const std::string& address, const std::string& host,
                                            const std::filesystem::path& credentials);

// The failure domain of a host: one per host name.
ec::FailureDomain host_domain(const std::string& host);

}  // namespace v2p::cluster
