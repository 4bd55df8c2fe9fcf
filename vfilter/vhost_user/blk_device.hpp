// One vhost-user-blk session: the frontend's (QEMU's) messages set up guest memory and the
// vrings, a thread per enabled queue pops virtio-blk requests, and each request runs through
// the vdisk's BlockBackend stack on tagged workers, exactly like an NBD request on the backend
// path: the worker thread carries the request's slot as its I/O priority, and every request
// publishes one ContextRecord. A vdisk on the io_uring image path (no stages) keeps it here
// too: reads and writes go from the queue thread's own ring straight between guest memory and
// the image, the slot in each SQE's ioprio, as an NBD connection does.
//
// handle() is the whole protocol and has no socket: the listener feeds it messages, the fuzzer
// and the unit tests do too.
#pragma once

#include <liburing.h>
#include <sys/uio.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "vfilter/block_backend.hpp"
#include "vfilter/server_context.hpp"
#include "vfilter/slot_allocator.hpp"
#include "vfilter/tagged_workers.hpp"
#include "vfilter/vhost_user/blk_request.hpp"
#include "vfilter/vhost_user/guest_memory.hpp"
#include "vfilter/vhost_user/virtqueue.hpp"
#include "vfilter/vhost_user/wire.hpp"

namespace v2p::vfilter::vhost_user {

struct BlkDeviceOptions {
  unsigned queues = 4;    // offered to the frontend (it may use fewer)
  unsigned threads = 16;  // tagged workers shared by the queues (requests block on them)
};

class BlkDevice {
 public:
  // `backend` is the top of the vdisk's stack; `vm` the VM name for the records.
  BlkDevice(ServerContext& ctx, const ExportRuntime& exp, std::shared_ptr<BlockBackend> backend,
            const std::string& vm, BlkDeviceOptions options);
  ~BlkDevice();  // reset()
  BlkDevice(const BlkDevice&) = delete;
  BlkDevice& operator=(const BlkDevice&) = delete;

  struct Reply {
    bool send = false;
    std::vector<std::byte> payload;
    bool close = false;  // a protocol violation: drop the session
  };
  // One message. The fds become the device's (kept or closed), whatever the outcome.
  Reply handle(std::uint32_t request, std::uint32_t flags, std::span<const std::byte> payload,
               std::vector<int>& fds);
  // The frontend is gone: stop the queues, wait for their requests, unmap guest memory, forget
  // everything negotiated. The device is then as new, for the next frontend.
  void reset();

  [[nodiscard]] std::uint64_t requests() const noexcept { return requests_.load(); }

 private:
  struct Work {
    std::uint16_t head = 0;
    BlkRequest req;
    std::vector<Segment> segs;
    std::size_t nsegs = 0;
    SlotLease slot;
    IoOp op = IoOp::kOther;
    bool tagged = false;
    std::uint64_t submit_ns = 0;
    std::byte* bounce = nullptr;  // grown on demand, kept for the next request on this head
    std::size_t bounce_len = 0;
    std::vector<iovec> iov;  // the guest buffers of a ring request
  };
  struct Queue {
    std::uint32_t num = 0;
    VringAddr addr{};
    bool addr_set = false;
    std::uint16_t base = 0;
    int kick = -1;
    int call = -1;
    int wake = -1;  // eventfd that stops or nudges the queue thread
    std::atomic<bool> enabled{false};
    std::atomic<bool> stopping{false};
    bool running = false;
    SplitQueue vq;
    std::thread thread;
    std::mutex used_mu;
    std::mutex flight_mu;
    std::condition_variable flight_cv;
    unsigned inflight = 0;
    std::vector<Work> works;  // indexed by head: heads are unique while in flight
    // The io_uring image path (set up by the queue thread, used only by it).
    io_uring ring{};
    bool ring_ready = false;
    unsigned ring_inflight = 0;
    unsigned ring_unsubmitted = 0;
  };

  std::uint64_t device_features() const noexcept;
  std::vector<std::byte> config_space() const;
  bool start_queue(unsigned i);
  void stop_queue(unsigned i);  // joins the thread and waits for its requests
  void run_queue(unsigned i) noexcept;
  void dispatch(Queue& q, Work& w) noexcept;
  // Reads and writes on the io_uring image path; false when the request must take the workers.
  bool submit_ring(Queue& q, Work& w) noexcept;
  void reap_ring(Queue& q) noexcept;
  // Publishes the record and returns the request to the guest (any thread).
  void finish(Queue& q, Work& w, int result, bool notify = true) noexcept;
  int execute(Work& w) noexcept;
  // With notify false the caller signals the guest once for a batch (notify_guest()).
  void complete(Queue& q, Work& w, std::uint8_t status, std::uint32_t written,
                bool notify = true) noexcept;
  void notify_guest(Queue& q) noexcept;
  void publish(const Work& w, int result) noexcept;

  ServerContext& ctx_;
  const ExportRuntime& export_;
  std::shared_ptr<BlockBackend> backend_;
  std::string vm_;
  std::uint32_t vm_id_ = 0;
  std::uint32_t vdisk_id_ = 0;
  BlkDeviceOptions options_;
  std::uint64_t size_ = 0;
  bool read_only_ = false;

  std::uint64_t features_ = 0;
  std::uint64_t protocol_features_ = 0;
  bool owner_ = false;
  std::shared_ptr<GuestMemory> mem_;
  std::vector<std::unique_ptr<Queue>> queues_;
  std::unique_ptr<TaggedWorkers> workers_;
  std::atomic<std::uint64_t> requests_{0};
};

}  // namespace v2p::vfilter::vhost_user
