// A backend store: one directory (ideally the root of its own file system on its own disk)
// holding chunk files. The directory carries an identity file naming the pool and the store id,
// so an unmounted file system (an empty mountpoint) or somebody else's directory is never taken
// for the store and written into.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ec/chunk_format.hpp"
#include "ec/failure_domain.hpp"
#include "ec/result.hpp"

namespace v2p::ec {

// What a chunk must be for a read to use it: all of it is checked against the header.
struct ChunkExpect {
  std::uint64_t pool_id = 0;
  std::uint64_t container_id = 0;
  std::uint64_t nonce = 0;
  std::uint8_t index = 0;
  std::uint8_t k = 0;
  std::uint8_t m = 0;
  std::uint32_t chunk_len = 0;
};

struct StoredChunk {
  std::uint64_t container_id = 0;
  std::uint8_t index = 0;
  std::filesystem::path path;
};

class StoreBackend;

class Store {
 public:
  enum class State { kOnline, kMissing, kNoIdentity, kForeign };

  Store(std::uint32_t id, std::filesystem::path root) : id_(id), root_(std::move(root)) {}
  // A store another host serves (cluster/remote_store): every call below goes to `backend`;
  // `root` is only a label ("host2:/srv/disk1/v2p").
  Store(std::uint32_t id, std::filesystem::path root, std::shared_ptr<const StoreBackend> backend)
      : id_(id), root_(std::move(root)), backend_(std::move(backend)) {}

  [[nodiscard]] std::uint32_t id() const noexcept { return id_; }
  [[nodiscard]] const std::filesystem::path& root() const noexcept { return root_; }

  // Looks at the directory now (a file system may be unmounted at any time).
  [[nodiscard]] State probe(std::uint64_t pool_id) const;
  // Writes the identity file into an existing directory that holds nothing else (a new or a
  // replacement store; `lost+found` is allowed). Throws v2p::Error otherwise.
  void adopt(std::uint64_t pool_id) const;

  // Durable on return: temporary file, fdatasync, rename, fsync of the directory.
  Result<bool> write_chunk(const ChunkHeader& header, std::span<const std::uint8_t> payload) const;
  // The whole payload, with header and payload CRC checked against `expect`.
  Result<std::vector<std::uint8_t>> read_chunk(const ChunkExpect& expect) const;
  // `len` payload bytes from `offset`; the header is checked, the caller checks the bytes
  // (block CRCs), which is cheaper than reading the whole chunk for its CRC.
  Result<std::vector<std::uint8_t>> read_range(const ChunkExpect& expect, std::uint32_t offset,
                                               std::uint32_t len) const;
  // True when the chunk file exists with the right size (cheap: no read).
  [[nodiscard]] bool has_chunk(const ChunkExpect& expect) const;
  void remove_chunk(std::uint64_t container_id, std::uint8_t index) const noexcept;
  // Every chunk file (and left-over temporary) in the store.
  [[nodiscard]] std::vector<StoredChunk> list_chunks() const;
  [[nodiscard]] std::vector<std::filesystem::path> list_temporaries() const;

  [[nodiscard]] std::filesystem::path chunk_path(std::uint64_t container_id,
                                                 std::uint8_t index) const;

  // The disk of a local store (failure_domain_of); the host (then disk) of a remote one.
  [[nodiscard]] FailureDomain failure_domain() const;
  // Added to the store's chunk count when placement ranks stores: 0 locally; from free space
  // and host load for a remote store, so fuller or busier hosts get fewer new chunks.
  [[nodiscard]] std::uint64_t placement_penalty() const;
  [[nodiscard]] bool remote() const noexcept { return backend_ != nullptr; }

 private:
  std::uint32_t id_;
  std::filesystem::path root_;
  std::shared_ptr<const StoreBackend> backend_;
};

// What a remote store implements; the same contract as Store's methods of the same name. May
// block (network); must not throw from the Result-returning calls.
class StoreBackend {
 public:
  virtual ~StoreBackend() = default;
  [[nodiscard]] virtual Store::State probe(std::uint64_t pool_id) const = 0;
  virtual void adopt(std::uint64_t pool_id) const = 0;
  virtual Result<bool> write_chunk(const ChunkHeader& header,
                                   std::span<const std::uint8_t> payload) const = 0;
  virtual Result<std::vector<std::uint8_t>> read_chunk(const ChunkExpect& expect) const = 0;
  virtual Result<std::vector<std::uint8_t>> read_range(const ChunkExpect& expect,
                                                       std::uint32_t offset,
                                                       std::uint32_t len) const = 0;
  [[nodiscard]] virtual bool has_chunk(const ChunkExpect& expect) const = 0;
  virtual void remove_chunk(std::uint64_t container_id, std::uint8_t index) const noexcept = 0;
  [[nodiscard]] virtual std::vector<StoredChunk> list_chunks() const = 0;
  [[nodiscard]] virtual FailureDomain failure_domain() const = 0;
  [[nodiscard]] virtual std::uint64_t placement_penalty() const = 0;
};

const char* to_string(Store::State s) noexcept;

}  // namespace v2p::ec
