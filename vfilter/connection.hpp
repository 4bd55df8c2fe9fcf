// One NBD client connection: the protocol only. The reader thread negotiates, then reads requests
// and hands each to the top of the export's stage stack (BlockBackend::submit) with the
// connection's IoChannel; the channel's completion thread ends them and sends the replies, in
// completion order (replies go out of order by design). What happens to the data below, and
// which host I/O it takes, is the stages' business (vfilter/image_ring.cpp at the bottom).
#pragma once

#include <boost/intrusive/list.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/host_layout/aligned_buffer.hpp"
#include "vfilter/export_timings.hpp"
#include "vfilter/io_channel.hpp"
#include "vfilter/nbd_structured_reply.hpp"
#include "vfilter/request.hpp"
#include "vfilter/server_context.hpp"
#include "vfilter/slot_allocator.hpp"

namespace v2p::vfilter {

class Connection;

// One NBD request in the stack: its buffer, its tag slot for its whole life, and the StageIo the
// stack works on; its done() is where the stack's answer becomes the reply.
struct Pending final : v2p::Completion,
                       boost::intrusive::list_base_hook<boost::intrusive::tag<Pending>> {
  Connection* conn = nullptr;
  RequestHeader req;
  Action action{};
  host_layout::AlignedBuffer buf;
  std::uint64_t room = 0;         // bytes counted against the connection's in-flight budget
  std::uint64_t received_ns = 0;  // request header read (0: not timed)
  SlotLease slot;
  StageIo io;
  void done(int result) noexcept override;
};

class TlsSession;

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

  // recv(2) on the socket, or through TLS once STARTTLS ran.
  ssize_t receive(void* buf, std::size_t len);
  bool start_tls();
  bool read_exact(void* dst, std::size_t n);
  bool discard(std::uint64_t n);
  // Sends `head` then `len` bytes of `data` as one message (replies of concurrent requests
  // never interleave).
  bool send_frame(std::span<const std::byte> head, const void* data, std::size_t len);
  // The reply to a request without data, framed as the handshake agreed.
  bool send_status(const RequestHeader& req, std::uint32_t error);
  // The reply to a successful READ (a hole chunk when the data is all zeros).
  bool send_read(const RequestHeader& req, const std::byte* data, std::size_t len);
  // NBD_CMD_BLOCK_STATUS, answered on the reader: a few lseeks, no host I/O to attribute.
  void answer_block_status(const RequestHeader& req);

  void wait_for_room(std::uint64_t bytes);
  void begin(Pending* p);
  friend struct Pending;
  void finish(Pending* p, std::uint32_t error);

  ServerContext& ctx_;
  int fd_;
  std::string peer_vm_;
  std::string vm_name_;  // the VM this connection serves (configured or discovered)
  const ExportRuntime* export_ = nullptr;
  std::uint32_t agreed_min_block_ = 1;
  ReplyStyle reply_style_ = ReplyStyle::kSimple;
  bool base_allocation_ = false;
  std::uint32_t vm_id_ = 0;
  std::uint32_t vdisk_id_ = 0;
  ExportTimings::Vdisk* timings_ = nullptr;  // the export layer's latency (observation)

  std::unique_ptr<TlsSession> tls_;  // set by STARTTLS, before the completer exists
  // Receive buffer (the reader only).
  std::vector<std::byte> rbuf_;
  std::size_t rpos_ = 0;

  std::unique_ptr<IoChannel> channel_;
  std::mutex send_mu_;
  std::atomic<bool> broken_{false};

  std::mutex flight_mu_;
  std::condition_variable flight_cv_;
  unsigned reserved_ = 0;  // requests counted by wait_for_room, allocated or not yet
  std::uint64_t inflight_bytes_ = 0;
  boost::intrusive::list<
      Pending,
      boost::intrusive::base_hook<boost::intrusive::list_base_hook<boost::intrusive::tag<Pending>>>>
      inflight_;  // the requests handed to the stack

  std::thread reader_;
  std::mutex fd_mu_;  // close() vs shutdown() from the server thread
  std::atomic<bool> finished_{false};
};

}  // namespace v2p::vfilter
