// The chunk service an agent runs for the other hosts: its local ec stores, over gRPC with TLS
// (both sides present a certificate of the cluster CA; see credentials.hpp). A peer without one
// never gets past the handshake. Requests name the store by id; unknown ids are refused.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "ec/config.hpp"

namespace grpc {
class Server;
}

namespace v2p::cluster {

class ChunkServer {
 public:
  // Listens on `address` ("0.0.0.0:7420"; port 0 picks one). Throws v2p::Error.
  ChunkServer(const std::string& address, const std::filesystem::path& credentials,
              const std::vector<ec::StoreConfig>& stores);
  ~ChunkServer();
  ChunkServer(const ChunkServer&) = delete;
  ChunkServer& operator=(const ChunkServer&) = delete;

  [[nodiscard]] int port() const noexcept { return port_; }
  // Requests answered (any method), for tests and status.
  [[nodiscard]] std::uint64_t requests() const noexcept;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// Free and total bytes of the file system holding `path` (0, 0 when it cannot be stat'ed).
std::pair<std::uint64_t, std::uint64_t> fs_space(const std::filesystem::path& path);

}  // namespace v2p::cluster
