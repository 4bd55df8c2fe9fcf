// The exact join for passive attach (docs/attach.md): QEMU's own block-layer requests, seen by
// uprobes, turned into the same ContextRecords and tagged PhysEvents the vfilter's tag join uses.
//
//  1. A request at a device's top node (the guest-visible offset) and the requests its driver
//     issues one layer down (qcow2 -> file) share the QEMUIOVector that holds the guest's data:
//     a lower-layer request on (qiov, qiov_offset) is the part of the top request at
//     top.offset + (qiov_offset - top.qiov_offset). That gives, per file offset, the guest offset.
//  2. QEMU's thread-pool aio does each file request as one positioned read/write syscall in a
//     worker thread; the process's bios queued by that thread inside the syscall's window are
//     that syscall's (measured: docs/attach.md). The syscall becomes a ContextRecord of a
//     synthetic tagged process (tgid = the worker's tid, slot 1: a thread is in one syscall at a
//     time, so windows of one (tid, slot) never overlap) and its bios are re-tagged the same way,
//     so the correlator's exact join places them with confidence 1.
//  3. File requests with no guest request above them are the format's own metadata (qcow2 L1/L2
//     and refcount tables, cluster allocation): their bios are counted as metadata of the vdisk
//     that node serves, never placed. Bios of a traced process in no syscall window are
//     unattributed. Neither reaches the correlator under the process's tgid, so no window join
//     (the fallback for opaque backends) guesses them into a request.
//
// Thread-compatible: one thread feeds it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "v2p/records.hpp"
#include "v2p/types.hpp"

namespace v2p::correlator {

// The entry of bdrv_co_preadv_part / bdrv_co_pwritev_part in the traced process.
struct LayerRequest {
  std::uint64_t ts_ns = 0;
  std::uint32_t tgid = 0;
  std::uint32_t tid = 0;
  std::uint64_t node = 0;  // BlockDriverState* in the process
  std::uint64_t offset = 0;
  std::uint64_t bytes = 0;
  std::uint64_t qiov = 0;  // 0: write-zeroes (no data)
  std::uint64_t qiov_offset = 0;
  bool write = false;
};

// A positioned read/write syscall of the traced process (thread-pool aio), at its exit.
struct FileIo {
  std::uint64_t start_ns = 0;
  std::uint64_t end_ns = 0;
  std::uint32_t tgid = 0;
  std::uint32_t tid = 0;
  std::uint64_t fd = 0;
  std::uint64_t pos = 0;
  std::int64_t result = 0;  // bytes done, or -errno
  bool write = false;
  bool data = true;  // false: fallocate / fdatasync / fsync, whose bios are never guest data
  // io_uring_enter / io_submit (aio=io_uring, aio=native): `result` requests submitted, the
  // oldest file requests this thread queued; their bios are queued inside, in that order.
  bool submit = false;
};

// What the process says about one of its nodes (qemu_nodes.hpp reads it from its memory).
struct NodeInfo {
  bool protocol = false;  // a leaf doing file I/O (file, host_device): never a device's top node
  std::string format;     // "qcow2", "raw", "file", ...
  std::string path;       // absolute path of the image or device it opens
};

struct UprobeJoinStats {
  std::uint64_t layer_requests = 0;
  std::uint64_t top_requests = 0;       // guest-visible requests (top nodes)
  std::uint64_t lower_requests = 0;     // their parts one or more layers down
  std::uint64_t metadata_requests = 0;  // file requests with no guest request above
  std::uint64_t data_syscalls = 0;      // syscalls turned into records
  std::uint64_t other_syscalls = 0;     // syscalls of no guest request
  std::uint64_t data_bios = 0;          // bios re-tagged for the exact join
  std::uint64_t unattributed_bios = 0;  // in no syscall window, or of no known node
  std::uint64_t unattributed_bytes = 0;
  std::uint64_t submit_windows = 0;     // io_uring_enter / io_submit windows joined
  std::uint64_t submit_mismatches = 0;  // ... whose bios did not add up (a punt): unattributed
  std::map<VdiskKey, std::uint64_t> metadata_bytes;  // "metadata of vdisk X"
};

class UprobeJoin {
 public:
  struct Hooks {
    // The node behind a BlockDriverState pointer of process tgid, or nullopt when unreadable.
    std::function<std::optional<NodeInfo>(std::uint32_t tgid, std::uint64_t node)> node;
    // The absolute path an fd of process tgid refers to.
    std::function<std::optional<std::string>(std::uint32_t tgid, std::uint64_t fd)> fd_path;
    // The vdisk a top node serves (declared by the caller), or nullopt to ignore that node.
    std::function<std::optional<VdiskKey>(std::uint32_t tgid, const NodeInfo& top)> vdisk;
    std::function<void(const ContextRecord&)> on_record;
    std::function<void(const PhysEvent&)> on_event;
  };
  // hold_ns: how long a traced process's bio waits for the syscall window that owns it (the
  // probe delivers one CPU's bios up to ~80 ms after another's).
  explicit UprobeJoin(Hooks hooks, std::uint64_t hold_ns = 300'000'000);

  void add_process(std::uint32_t tgid);
  void remove_process(std::uint32_t tgid);  // its held bios are released first
  [[nodiscard]] bool traced(std::uint32_t tgid) const;

  void on_layer(const LayerRequest& r);
  void on_file_io(const FileIo& f);
  // Any probe event: those of traced processes are joined, the rest pass through unchanged.
  void on_event(const PhysEvent& e);
  // Releases what waited longer than hold_ns before now_ns (CLOCK_MONOTONIC).
  void advance(std::uint64_t now_ns);
  void drain();

  [[nodiscard]] const UprobeJoinStats& stats() const noexcept { return stats_; }

 private:
  struct Top {
    std::uint64_t ts_ns = 0;
    std::uint64_t node = 0;
    std::uint64_t offset = 0;
    std::uint64_t bytes = 0;
    std::uint64_t qiov_offset = 0;
    VdiskKey vdisk;
  };
  struct FileRange {  // a file request and the guest range it carries
    std::uint64_t ts_ns = 0;
    std::uint64_t bytes = 0;
    bool data = false;  // false: metadata of `vdisk` (or of nobody when unknown)
    bool known_vdisk = false;
    VdiskKey vdisk;
    std::uint64_t voffset = 0;
  };
  struct Window {
    std::uint64_t start_ns = 0;
    std::uint64_t end_ns = 0;
    bool data = false;
    bool known_vdisk = false;
    VdiskKey vdisk;
  };
  struct Queued {  // a file request waiting for the submit syscall that issues it
    std::string path;
    std::uint64_t offset = 0;
    std::uint64_t bytes = 0;
    bool write = false;
    FileRange range;
  };
  struct SubmitWindow {
    std::uint32_t tid = 0;
    std::uint64_t start_ns = 0;
    std::uint64_t end_ns = 0;
    std::uint64_t count = 0;
    std::vector<PhysEvent> bios;
  };
  struct Process {
    std::unordered_map<std::uint64_t, NodeInfo> nodes;
    std::unordered_map<std::uint64_t, VdiskKey> node_vdisk;
    std::map<std::string, VdiskKey> path_vdisk;   // a top node's file -> its vdisk
    std::unordered_map<std::uint64_t, Top> tops;  // by qiov
    std::map<std::string, std::map<std::uint64_t, FileRange>> files;  // path -> offset -> range
    std::unordered_map<std::uint32_t, std::deque<Window>> windows;    // by tid
    std::deque<PhysEvent> held;
    std::unordered_map<std::uint32_t, std::deque<Queued>> queued;  // by the queuing thread
    std::deque<SubmitWindow> submits;
    std::unordered_map<std::uint32_t, std::uint16_t> next_slot;  // submit records, by tid
    std::uint64_t seq = 0;
  };

  const NodeInfo* node(Process& p, std::uint32_t tgid, std::uint64_t bs);
  void place(Process& p, const PhysEvent& e, const Window& w);
  void release(Process& p, const PhysEvent& e);
  void expire(Process& p, std::uint64_t before_ns);
  void finish_submit(Process& p, SubmitWindow& w);
  void unattributed(const PhysEvent& e);

  Hooks hooks_;
  std::uint64_t hold_ns_;
  std::unordered_map<std::uint32_t, Process> procs_;
  UprobeJoinStats stats_;
};

}  // namespace v2p::correlator
