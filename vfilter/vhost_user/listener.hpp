// `v2p serve --vhost-user SOCK`: the unix socket a vhost-user frontend (QEMU's
// vhost-user-blk-pci, the test driver) connects to. One frontend at a time, as the protocol
// has it; when it goes (a guest powered off, a QEMU killed) its session is torn down and the
// next frontend gets a fresh device over the same vdisk stack.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <thread>

#include "vfilter/server_context.hpp"
#include "vfilter/vhost_user/blk_device.hpp"

namespace v2p::vfilter::vhost_user {

class Listener {
 public:
  // Serves ctx.exports[export_index]. Binds now (throws v2p::Error with what to fix).
  Listener(ServerContext& ctx, std::size_t export_index, const std::filesystem::path& socket,
           mode_t mode, BlkDeviceOptions options);
  ~Listener();  // stops: the current session ends, its requests complete, the socket goes
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  [[nodiscard]] std::uint64_t sessions() const noexcept { return sessions_.load(); }

 private:
  void accept_loop() noexcept;
  void serve(int fd);

  ServerContext& ctx_;
  const ExportRuntime& export_;
  std::shared_ptr<BlockBackend> backend_;
  std::filesystem::path socket_;
  BlkDeviceOptions options_;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::atomic<std::uint64_t> sessions_{0};
  std::thread thread_;
};

}  // namespace v2p::vfilter::vhost_user
