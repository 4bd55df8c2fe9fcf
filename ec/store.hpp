// A backend store: one directory (ideally the root of its own file system on its own disk)
// holding chunk files. The directory carries an identity file naming the pool and the store id,
// so an unmounted file system (an empty mountpoint) or somebody else's directory is never taken
// for the store and written into.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "ec/chunk_format.hpp"
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

class Store {
 public:
  enum class State { kOnline, kMissing, kNoIdentity, kForeign };

  Store(std::uint32_t id, std::filesystem::path root) : id_(id), root_(std::move(root)) {}

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

 private:
  std::uint32_t id_;
  std::filesystem::path root_;
};

const char* to_string(Store::State s) noexcept;

}  // namespace v2p::ec
