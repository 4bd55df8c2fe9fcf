// A pool on temporary directories (all on one disk, so allow_shared_domains is on), and the
// ways a test damages its stores.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "ec/config.hpp"

namespace v2p::ec::testing {

struct TempPool {
  TempPool(int stores, Layout layout, std::uint32_t container_bytes = 1U << 20,
           std::uint32_t block_bytes = 16U << 10);
  ~TempPool();
  TempPool(const TempPool&) = delete;
  TempPool& operator=(const TempPool&) = delete;

  [[nodiscard]] std::filesystem::path store(std::uint32_t id) const;
  [[nodiscard]] std::vector<std::filesystem::path> chunk_files(std::uint32_t id) const;

  std::filesystem::path dir;
  PoolConfig config;
};

// Deterministic bytes for (seed, length).
std::vector<std::uint8_t> pattern(std::uint64_t seed, std::size_t length);

enum class Damage {
  kDeleteChunks,    // every chunk file removed
  kCorruptPayload,  // one payload byte flipped in every chunk file
  kCorruptHeader,   // one header byte flipped
  kTruncate,        // chunk files cut to half
  kDirectoryGone,   // the store directory is absent (unmounted, path gone)
  kEmptyDirectory,  // an empty directory in its place (unmounted mountpoint)
};
const char* to_string(Damage d);
inline constexpr Damage kAllDamage[] = {Damage::kDeleteChunks,  Damage::kCorruptPayload,
                                        Damage::kCorruptHeader, Damage::kTruncate,
                                        Damage::kDirectoryGone, Damage::kEmptyDirectory};

void damage(const TempPool& pool, std::uint32_t store, Damage how);

// Copies of store directories, put back by restore().
class StoreBackup {
 public:
  StoreBackup(const TempPool& pool, std::vector<std::uint32_t> stores);
  void restore() const;

 private:
  const TempPool& pool_;
  std::vector<std::uint32_t> stores_;
};

}  // namespace v2p::ec::testing
