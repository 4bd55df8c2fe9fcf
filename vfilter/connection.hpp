// One NBD client connection. Two threads: the reader negotiates, then reads requests and submits
// host I/O to the connection's own io_uring; the completer reaps completions, publishes the
// records and sends the replies, in completion order (replies go out of order by design).
#pragma once

#include <liburing.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "vfilter/export_timings.hpp"
#include "vfilter/server_context.hpp"
#include "vfilter/tagged_workers.hpp"

namespace v2p::vfilter {

struct Pending;

class Connection {
 public:
  // Takes ownership of `fd`. `peer_vm` names the VM for exports configured without one.
  Connection(ServerContext& ctx, int fd, std::string peer_vm);
  ~Connection();  // shuts the socket down and joins
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void start();
  // Wakes the reader (the socket stops delivering); in-flight host I/O still completes.
  void shutdown() noexcept;
  [[nodiscard]] bool finished() const noexcept { return finished_.load(); }

  // Bounds on what one connection may have in flight (memory and ring space).
  static constexpr unsigned kMaxInflight = 128;
  static constexpr std::uint64_t kMaxInflightBytes = 128ULL << 20;

 private:
  void run() noexcept;
  bool negotiate();
  void serve();
  void complete_loop() noexcept;

  bool read_exact(void* dst, std::size_t n);
  bool discard(std::uint64_t n);
  bool send_reply(std::uint64_t cookie, std::uint32_t error, const void* data, std::size_t len);

  void wait_for_room(std::uint64_t bytes);
  void begin(Pending* p);
  void submit(Pending* p);
  // Host I/O done by a tagged worker thread instead of the ring: writes to images whose direct
  // writes the file system buffers, and every request of an export served by a BlockBackend. The
  // completion comes back through the ring as a NOP, so the completer stays the only reaper.
  void submit_thread_tagged_write(Pending* p);
  void submit_to_backend(Pending* p);
  void run_on_worker(Pending* p, std::uint16_t ioprio, TaggedWorkers::Job job);
  [[nodiscard]] TaggedWorkers& workers();
  // Takes an SQE under sq_mu_, lets `prepare` fill it and submits: 0 or -errno. A template, not
  // a std::function: the ring path calls it per host I/O and must not allocate.
  template <class Prepare>
  int submit_sqe(Prepare&& prepare);
  void on_host_complete(Pending* p, int res);
  void finish(Pending* p, std::uint32_t error);
  void publish(const Pending* p, int res, std::uint64_t complete_ns) noexcept;

  ServerContext& ctx_;
  int fd_;
  std::string peer_vm_;
  std::string vm_name_;  // the VM this connection serves (configured or discovered)
  const ExportRuntime* export_ = nullptr;
  std::uint32_t agreed_min_block_ = 1;
  std::uint32_t vm_id_ = 0;
  std::uint32_t vdisk_id_ = 0;
  ExportTimings::Vdisk* timings_ = nullptr;  // the export layer's latency (observation)

  // Receive buffer (the reader only).
  std::vector<std::byte> rbuf_;
  std::size_t rpos_ = 0;

  io_uring ring_{};
  bool ring_ready_ = false;
  std::mutex sq_mu_;  // the reader and the completer both submit
  std::mutex send_mu_;
  std::atomic<bool> broken_{false};

  std::mutex flight_mu_;
  std::condition_variable flight_cv_;
  unsigned inflight_ = 0;
  std::uint64_t inflight_bytes_ = 0;
  bool reader_done_ = false;

  std::unique_ptr<TaggedWorkers> workers_;  // created on first use (under sq_mu_)

  std::thread reader_;
  std::thread completer_;
  std::mutex fd_mu_;  // close() vs shutdown() from the server thread
  std::atomic<bool> finished_{false};
};

}  // namespace v2p::vfilter
