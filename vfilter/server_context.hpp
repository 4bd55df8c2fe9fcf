// State the listener and all connections of one Server share. Internal to vfilter/.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "pfilter/slot_table.hpp"
#include "vfilter/block_backend.hpp"
#include "vfilter/handshake.hpp"
#include "vfilter/nbd_tls.hpp"
#include "vfilter/server.hpp"

namespace v2p::vfilter {

struct ExportRuntime {
  VdiskConfig config;
  // The top of the vdisk's stage stack (an image alone is vfilter/image_ring.cpp's io_uring path).
  std::shared_ptr<BlockBackend> backend;
  // The processes doing this vdisk's host I/O untagged (backend->opaque_processes()); empty on
  // the tagged paths. Records then name the process (or 0 for several) and carry slot 0.
  std::vector<pid_t> opaque_pids;
  ExportInfo info;
  // What the declaration names as the vdisk's data (the image path, or the backend's own name).
  [[nodiscard]] std::string data_path() const {
    if (!config.image.empty()) return config.image.string();
    return backend ? backend->describe() : std::string();
  }
};

// Stable small ids per VM name and per (VM, vdisk), declared to the sink on first use.
class VdiskRegistry {
 public:
  explicit VdiskRegistry(RecordSink* sink) : sink_(sink) {}
  struct Ids {
    std::uint32_t vm_id = 0;
    std::uint32_t vdisk_id = 0;
  };
  // Thread-safe; declares the vdisk (sink->declare), then each of its opaque backend processes
  // (sink->declare_backend), the first time a pair is seen.
  Ids ids(const std::string& vm, const std::string& vdisk, const std::string& image_path,
          const std::vector<pid_t>& backend_pids);

 private:
  std::mutex mu_;
  RecordSink* sink_;
  std::map<std::string, std::uint32_t> vms_;
  std::map<std::pair<std::string, std::string>, std::uint32_t> vdisks_;
};

struct ServerContext {
  explicit ServerContext(RecordSink* s) : sink(s), registry(s) {}
  std::vector<ExportRuntime> exports;
  RecordSink* sink;
  bool tagging = true;
  // Where tagged image I/O publishes its slot's context (ServerConfig::slot_table_fd, or one the
  // agent sent later: Server::attach_slot_table); null: none. A table replaced by a newer one
  // stays mapped until the server goes, as a connection may still be publishing into it.
  std::atomic<pfilter::SlotTable*> slot_table{nullptr};
  void install_slot_table(std::unique_ptr<pfilter::SlotTable> t) {
    std::lock_guard lock(slot_tables_mu);
    slot_table.store(t.get(), std::memory_order_release);
    slot_tables.push_back(std::move(t));
  }
  std::mutex slot_tables_mu;
  std::vector<std::unique_ptr<pfilter::SlotTable>> slot_tables;
  VdiskRegistry registry;
  // Set with ServerConfig::tls_creds: TLS is then required on TCP connections.
  std::unique_ptr<TlsCredentials> tls;
  std::atomic<std::uint64_t> connections{0}, requests{0}, bytes_read{0}, bytes_written{0},
      errors{0};
};

}  // namespace v2p::vfilter
