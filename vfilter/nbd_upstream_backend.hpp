// An upstream NBD server as the vdisk's backend, through libnbd: the "opaque" path, where the
// vdisk's data is a format only the upstream understands (qemu-storage-daemon or qemu-nbd serving
// a qcow2). The upstream's own host I/O carries no tag; the correlator attributes it by time
// window to the upstream's process, which upstream_pids() names (SO_PEERCRED of the sockets).
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "vfilter/block_backend.hpp"

struct nbd_handle;

namespace v2p::vfilter {

class NbdUpstreamBackend final : public BlockBackend {
 public:
  // Connects `connections` handles to `uri` (nbd://, nbd+unix://; libnbd's syntax) and checks
  // that they agree on the size. Throws v2p::Error with the upstream's message on failure.
  NbdUpstreamBackend(std::string uri, unsigned connections, bool read_only);
  ~NbdUpstreamBackend() override;
  NbdUpstreamBackend(const NbdUpstreamBackend&) = delete;
  NbdUpstreamBackend& operator=(const NbdUpstreamBackend&) = delete;

  [[nodiscard]] std::uint64_t size() const override { return size_; }
  [[nodiscard]] bool read_only() const override { return read_only_; }
  [[nodiscard]] std::string describe() const override { return uri_; }
  // The processes serving the upstream sockets (unix sockets only; empty over TCP).
  [[nodiscard]] std::vector<pid_t> upstream_pids() const { return pids_; }
  [[nodiscard]] std::vector<pid_t> opaque_processes() const override { return pids_; }

  int read(const IoTarget& who, std::span<std::byte> out, std::uint64_t offset) override;
  int write(const IoTarget& who, std::span<const std::byte> data, std::uint64_t offset,
            Fua fua) override;
  int write_zeroes(const IoTarget& who, std::uint64_t offset, std::uint64_t length,
                   MayPunch may_punch, Fua fua) override;
  int trim(const IoTarget& who, std::uint64_t offset, std::uint64_t length) override;
  int flush(const IoTarget& who) override;

 private:
  // One libnbd handle serves one command at a time; the pool gives each worker its own.
  class Lease;
  nbd_handle* acquire();
  void release(nbd_handle* h);

  std::string uri_;
  bool read_only_;
  std::uint64_t size_ = 0;
  bool can_fua_ = false, can_trim_ = false, can_zero_ = false, multi_conn_ = false;
  std::vector<nbd_handle*> all_;
  std::vector<pid_t> pids_;
  std::mutex flush_mu_;  // one flush at a time holds every handle
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<nbd_handle*> idle_;
};

}  // namespace v2p::vfilter
