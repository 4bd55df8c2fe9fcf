// Pool configuration: the stores, the metadata directory and k+m (default, per VM, per vdisk),
// from a JSON file and/or flags. See docs/ec.md for the file format.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "v2p/types.hpp"

namespace v2p::ec {

struct Layout {
  int k = 4;
  int m = 2;
  auto operator<=>(const Layout&) const = default;
  [[nodiscard]] std::string label() const { return std::to_string(k) + "+" + std::to_string(m); }
};

class StoreBackend;

struct StoreConfig {
  StoreConfig() = default;
  StoreConfig(std::uint32_t store_id, std::filesystem::path store_path,
              std::shared_ptr<const StoreBackend> store_backend = {})
      : id(store_id), path(std::move(store_path)), backend(std::move(store_backend)) {}

  std::uint32_t id = 0;
  std::filesystem::path path;                   // a remote store: a label, the backend does the I/O
  std::shared_ptr<const StoreBackend> backend;  // null: the local directory `path`
};

struct PoolConfig {
  std::filesystem::path metadata_dir;
  std::vector<StoreConfig> stores;
  Layout default_layout;
  std::map<std::uint32_t, Layout> vm_layouts;
  std::map<std::pair<std::uint32_t, std::uint32_t>, Layout> vdisk_layouts;
  std::uint32_t container_bytes = 4U << 20;  // seal a container once it holds this much
  std::uint32_t block_bytes = 64U << 10;     // unit of the block index and of read checksums
  bool allow_shared_domains = false;
  std::chrono::milliseconds hedge_delay{50};  // data chunks slower than this: read parity too
  int io_threads = 16;
  // Consulted before a container is placed: false refuses the write (a cluster host that lost
  // its etcd lease must not place data on what may be stale membership). Null: always allowed.
  std::function<bool()> may_place;

  // The vdisk's own layout, else its VM's, else the default.
  [[nodiscard]] Layout layout_for(VdiskKey key) const;
  // Throws v2p::Error naming the first bad value.
  void validate() const;
};

// "4+2" -> {4, 2}; throws v2p::Error otherwise.
Layout parse_layout(const std::string& text);
// Throws v2p::Error with the file name and the problem.
PoolConfig load_config(const std::filesystem::path& file);
PoolConfig parse_config(const std::string& json_text, const std::string& origin = "config");

}  // namespace v2p::ec
