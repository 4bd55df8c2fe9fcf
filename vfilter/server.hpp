// The vfilter: an NBD server that QEMU attaches a vdisk to. Every host I/O it issues for a guest
// request carries a slot id in its io_uring ioprio hint bits and produces one ContextRecord.
// See docs/vfilter.md for the design and docs/operator-guide.md for attaching a VM.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "v2p/records.hpp"
#include "vfilter/block_backend.hpp"
#include "vfilter/record_sink.hpp"
#include "vfilter/sinks.hpp"

namespace v2p::vfilter {

struct VdiskConfig {
  std::string vm;  // empty = discover the connecting QEMU's name (unix socket only)
  std::string vdisk;
  // The image file. With `upstream` or `backend` set it is only what verification compares
  // against (the qcow2 behind the upstream); it may then be empty.
  std::filesystem::path image;
  std::string export_name;  // NBD export name; empty = same as vdisk
  bool read_only = false;
  // An upstream NBD server (libnbd URI) serves the data: the opaque path.
  std::string upstream;
  unsigned upstream_connections = 4;
  // A backend stack built by the caller (cache, tier); takes precedence over image and upstream.
  std::shared_ptr<BlockBackend> backend;
  unsigned backend_threads = 8;  // tagged workers per connection for backend requests
};

// A vdisk served from an image file on the io_uring path, the common case.
inline VdiskConfig image_vdisk(std::string vm, std::string vdisk, std::filesystem::path image,
                               bool read_only = false) {
  VdiskConfig v;
  v.vm = std::move(vm);
  v.vdisk = std::move(vdisk);
  v.image = std::move(image);
  v.read_only = read_only;
  return v;
}

struct ServerConfig {
  std::vector<VdiskConfig> vdisks;
  std::filesystem::path unix_socket;  // empty = no unix listener
  mode_t socket_mode = 0600;
  std::string tcp_host = "127.0.0.1";  // used only when tcp_port != 0
  std::uint16_t tcp_port = 0;
  // A directory with ca-cert.pem, server-cert.pem and server-key.pem (qemu's layout): TCP
  // clients must then negotiate TLS (NBD_OPT_STARTTLS) before anything else.
  std::filesystem::path tls_creds;
  // A vhost-user-blk socket (vfilter/vhost_user/) serving the first vdisk to one frontend at a
  // time, with socket_mode; empty = none.
  std::filesystem::path vhost_user_socket;
  unsigned vhost_user_queues = 4;
  unsigned vhost_user_threads = 16;
  bool tagging = true;    // put slot ids into ioprio hint bits
  bool direct_io = true;  // O_DIRECT with clean fallback where unsupported (tmpfs)
  // The probe's slot table (pfilter/slot_table.hpp) and this process's row in it, given by the
  // probe's owner (Probe::slot_table_fd(), Probe::add_export()): each tagged image I/O's context
  // is published there before submission, so the kernel counts repeats instead of sending them.
  // -1: none (every tagged bio is sent). The fd is only mapped, not kept.
  int slot_table_fd = -1;
  std::uint32_t slot_table_row = 0;
};

struct ServerStats {
  std::uint64_t connections = 0, requests = 0, bytes_read = 0, bytes_written = 0, errors = 0;
};

class Server {
 public:
  // Opens the images, binds the listeners and returns once they accept connections. Throws
  // v2p::Error with a sentence saying what to fix.
  static std::unique_ptr<Server> start(const ServerConfig& config, RecordSink* sink);
  // Stops and joins everything and removes the unix socket.
  virtual ~Server() = default;
  // Closes the listeners and all connections; requests in flight complete first. Idempotent.
  virtual void stop() = 0;
  [[nodiscard]] virtual ServerStats stats() const = 0;
  // Connections currently open (for tests and `v2p serve` status lines).
  [[nodiscard]] virtual std::size_t open_connections() const = 0;
  // The TCP port the server listens on, or 0 without a TCP listener.
  [[nodiscard]] virtual std::uint16_t tcp_port() const = 0;
  // From now on, tagged image I/O publishes its slot contexts in row `row` of the slot table
  // behind map_fd (the agent's grant; the fd is not kept). Any thread. Throws v2p::Error when
  // the table cannot be mapped.
  virtual void attach_slot_table(int map_fd, std::uint32_t row) = 0;
};

}  // namespace v2p::vfilter
