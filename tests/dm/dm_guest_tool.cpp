// The guest side of the dm-v2p test: one static program (liburing.a, no shared libraries) that
// the test guest's init runs for each step. Subcommands:
//   write FILE MIB BS QD VDISK OUTDIR   tagged O_DIRECT io_uring writes of a new file; writes the
//                                       ContextRecords (OUTDIR/ctx-VDISK.bin) and the file's
//                                       FIEMAP extents (OUTDIR/fiemap-VDISK.txt)
//   rate DEV OFFSET_MIB SECONDS QD BS GO  tagged writes for SECONDS once file GO exists; prints
//                                       "pid N" at start and "rate iops=X bytes_per_s=Y" at the end
//   seq DEV OFFSET_MIB COUNT BS QD      tagged writes of COUNT consecutive blocks
//   drain OUT                           appends every record waiting in /dev/v2p-dm to OUT
//   ring-stats                          produced dropped delivered capacity
//   count RING DEVNUM OFFSET_MIB COUNT BS  checks that each block of a `seq` run has exactly one
//                                       tagged write record (none lost, none doubled)
//   prio-check RING DEVNUM TGID CLASS LEVEL  of the writes on DEVNUM by TGID (tagged) or, for
//                                       TGID 0, of every untagged write: how many arrived with
//                                       ioprio class CLASS and LEVEL, tag bits intact
//   bench DEV_A DEV_B ROUNDS SECONDS    4 KiB random reads at QD 32, alternating A and B in
//                                       rounds, while a thread drains the ring; prints IOPS
// Exit status 0 on success; every failure prints one line saying why.
#include <fcntl.h>
#include <liburing.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "pfilter/dm_ring_source.hpp"
#include "v2p/records.hpp"

extern "C" {
#include "dm-v2p-uapi.h"
}

static_assert(sizeof(v2p_dm_record) == sizeof(v2p::PhysEvent));

namespace {

// The 6.1 guest kernel refuses hint bits in the best-effort class (ioprio_check_cap before
// 6.5 checks all 13 data bits), but not in the idle class: tag there.
constexpr std::uint16_t kIdleClass = 3;
std::uint16_t tag_ioprio(std::uint16_t slot) {
  return static_cast<std::uint16_t>(kIdleClass << 13 | (slot & 0x3ff) << 3);
}

std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "dm_guest_tool: %s (%s)\n", why.c_str(), std::strerror(errno));
  std::exit(1);
}

struct Io {
  std::uint64_t offset;
  std::uint16_t slot;
  std::uint64_t submit_ns;
};

// Writes `count` blocks of `bs` bytes at base + i * bs (or at the offsets `pick` returns) with
// up to qd in flight, each tagged with its own slot; calls done(io, complete_ns) per completion.
template <class Pick, class Done>
void run_uring(int fd, std::uint32_t bs, unsigned qd, std::uint64_t count, bool read, Pick pick,
               Done done, const std::function<bool()>& keep_going = {}) {
  io_uring ring{};
  if (io_uring_queue_init(qd * 2, &ring, 0) != 0) die("io_uring_queue_init");
  std::vector<void*> bufs(qd);
  for (auto& b : bufs) {
    if (posix_memalign(&b, 4096, bs) != 0) die("posix_memalign");
    std::memset(b, 0x5a, bs);
  }
  std::vector<Io> ios(qd);
  std::vector<unsigned> free_idx;
  for (unsigned i = 0; i < qd; ++i) free_idx.push_back(i);
  std::uint64_t issued = 0, completed = 0;
  std::uint16_t next_slot = 1;
  for (;;) {
    while (!free_idx.empty() && issued < count && (!keep_going || keep_going())) {
      const unsigned i = free_idx.back();
      free_idx.pop_back();
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      ios[i] = {pick(issued), next_slot, 0};
      next_slot = static_cast<std::uint16_t>(next_slot % 1000 + 1);
      if (read) {
        io_uring_prep_read(sqe, fd, bufs[i], bs, ios[i].offset);
      } else {
        io_uring_prep_write(sqe, fd, bufs[i], bs, ios[i].offset);
      }
      sqe->ioprio = tag_ioprio(ios[i].slot);
      io_uring_sqe_set_data64(sqe, i);
      ios[i].submit_ns = now_ns();
      if (io_uring_submit(&ring) != 1) die("io_uring_submit");
      ++issued;
    }
    if (completed == issued) break;
    io_uring_cqe* cqe = nullptr;
    if (io_uring_wait_cqe(&ring, &cqe) != 0) die("io_uring_wait_cqe");
    const auto i = static_cast<unsigned>(io_uring_cqe_get_data64(cqe));
    if (cqe->res != static_cast<int>(bs)) {
      errno = cqe->res < 0 ? -cqe->res : EIO;
      die("I/O at " + std::to_string(ios[i].offset) + " returned " + std::to_string(cqe->res));
    }
    io_uring_cqe_seen(&ring, cqe);
    done(ios[i], now_ns());
    free_idx.push_back(i);
    ++completed;
  }
  io_uring_queue_exit(&ring);
  for (auto* b : bufs) std::free(b);
}

int cmd_write(char** a) {
  const std::string file = a[0], outdir = a[5];
  const std::uint64_t bytes = std::stoull(a[1]) << 20;
  const auto bs = static_cast<std::uint32_t>(std::stoul(a[2]));
  const auto qd = static_cast<unsigned>(std::stoul(a[3]));
  const auto vdisk = static_cast<std::uint32_t>(std::stoul(a[4]));
  const int fd = open(file.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_DIRECT, 0644);
  if (fd < 0) die("open " + file);
  std::vector<v2p::ContextRecord> recs;
  std::uint64_t seq = 0;
  run_uring(
      fd, bs, qd, bytes / bs, false, [&](std::uint64_t i) { return i * bs; },
      [&](const Io& io, std::uint64_t done_ns) {
        v2p::ContextRecord r;
        r.submit_ns = io.submit_ns;
        r.complete_ns = done_ns;
        r.voffset = io.offset;
        r.length = bs;
        r.tgid = static_cast<std::uint32_t>(getpid());
        r.vm_id = 1;
        r.vdisk_id = vdisk;
        r.slot = io.slot;
        r.op = 1;  // IoOp::kWrite
        r.seq = seq++;
        recs.push_back(r);
      });
  if (fsync(fd) != 0) die("fsync");
  const std::string ctx = outdir + "/ctx-" + std::to_string(vdisk) + ".bin";
  FILE* out = std::fopen(ctx.c_str(), "wb");
  if (!out || std::fwrite(recs.data(), sizeof(recs[0]), recs.size(), out) != recs.size())
    die("write " + ctx);
  std::fclose(out);

  // The file's extents as the file system placed them: logical, physical (bytes on the dm
  // device), length.
  std::vector<char> buf(sizeof(fiemap) + 512 * sizeof(fiemap_extent));
  auto* fm = reinterpret_cast<fiemap*>(buf.data());
  fm->fm_start = 0;
  fm->fm_length = ~0ull;
  fm->fm_flags = FIEMAP_FLAG_SYNC;
  fm->fm_extent_count = 512;
  if (ioctl(fd, FS_IOC_FIEMAP, fm) != 0) die("FIEMAP");
  const std::string ext = outdir + "/fiemap-" + std::to_string(vdisk) + ".txt";
  out = std::fopen(ext.c_str(), "w");
  if (!out) die("write " + ext);
  for (unsigned i = 0; i < fm->fm_mapped_extents; ++i) {
    const auto& e = fm->fm_extents[i];
    std::fprintf(out, "%llu %llu %llu\n", static_cast<unsigned long long>(e.fe_logical),
                 static_cast<unsigned long long>(e.fe_physical),
                 static_cast<unsigned long long>(e.fe_length));
  }
  std::fclose(out);
  close(fd);
  std::printf("wrote %llu bytes in %zu tagged I/Os at QD %u, %u extents, tgid %d\n",
              static_cast<unsigned long long>(bytes), recs.size(), qd, fm->fm_mapped_extents,
              getpid());
  return 0;
}

int cmd_rate(char** a) {
  const std::string dev = a[0], go = a[5];
  const std::uint64_t base = std::stoull(a[1]) << 20;
  const double seconds = std::stod(a[2]);
  const auto qd = static_cast<unsigned>(std::stoul(a[3]));
  const auto bs = static_cast<std::uint32_t>(std::stoul(a[4]));
  const int fd = open(dev.c_str(), O_RDWR | O_DIRECT);
  if (fd < 0) die("open " + dev);
  std::printf("pid %d\n", getpid());
  std::fflush(stdout);
  struct stat st {};
  while (stat(go.c_str(), &st) != 0) usleep(10'000);
  const std::uint64_t start = now_ns();
  const auto end = start + static_cast<std::uint64_t>(seconds * 1e9);
  std::uint64_t done = 0;
  run_uring(
      fd, bs, qd, ~0ull, false,
      [&](std::uint64_t i) { return base + (i % ((32u << 20) / bs)) * bs; },
      [&](const Io&, std::uint64_t) { ++done; }, [&] { return now_ns() < end; });
  const double s = static_cast<double>(now_ns() - start) / 1e9;
  std::printf("rate iops=%.0f bytes_per_s=%.0f\n", static_cast<double>(done) / s,
              static_cast<double>(done) * bs / s);
  close(fd);
  return 0;
}

int cmd_seq(char** a) {
  const int fd = open(a[0], O_RDWR | O_DIRECT);
  if (fd < 0) die(std::string("open ") + a[0]);
  const std::uint64_t base = std::stoull(a[1]) << 20;
  const std::uint64_t count = std::stoull(a[2]);
  const auto bs = static_cast<std::uint32_t>(std::stoul(a[3]));
  const auto qd = static_cast<unsigned>(std::stoul(a[4]));
  run_uring(
      fd, bs, qd, count, false, [&](std::uint64_t i) { return base + i * bs; },
      [](const Io&, std::uint64_t) {});
  close(fd);
  std::printf("seq wrote %llu blocks, tgid %d\n", static_cast<unsigned long long>(count), getpid());
  return 0;
}

int cmd_drain(char** a) {
  v2p::pfilter::DmRingSource ring;
  FILE* out = std::fopen(a[0], "ab");
  if (!out) die(std::string("open ") + a[0]);
  const auto n = ring.poll(0, [&](const v2p::PhysEvent& e) {
    if (std::fwrite(&e, sizeof(e), 1, out) != 1) die("write records");
  });
  std::fclose(out);
  std::printf("drained %zu records\n", n);
  return 0;
}

int cmd_ring_stats() {
  const auto st = v2p::pfilter::DmRingSource().stats();
  std::printf("%llu %llu %llu %llu\n", static_cast<unsigned long long>(st.produced),
              static_cast<unsigned long long>(st.dropped),
              static_cast<unsigned long long>(st.delivered),
              static_cast<unsigned long long>(st.capacity));
  return 0;
}

std::vector<v2p_dm_record> load_records(const char* path) {
  std::vector<v2p_dm_record> v;
  FILE* in = std::fopen(path, "rb");
  if (!in) die(std::string("open ") + path);
  v2p_dm_record r{};
  while (std::fread(&r, sizeof(r), 1, in) == 1) v.push_back(r);
  std::fclose(in);
  return v;
}

int cmd_count(char** a) {
  const auto recs = load_records(a[0]);
  const auto dev = static_cast<std::uint32_t>(std::stoul(a[1]));
  const std::uint64_t base = (std::stoull(a[2]) << 20) / 512;
  const std::uint64_t count = std::stoull(a[3]);
  const std::uint64_t per = std::stoull(a[4]) / 512;
  std::vector<unsigned> seen(count, 0);
  std::map<std::uint32_t, unsigned> by_tgid;
  for (const auto& r : recs) {
    if (r.dev != dev || r.op != V2P_DM_OP_WRITE || ((r.ioprio >> 3) & 0x3ff) == 0) continue;
    if (r.sector < base || r.sector >= base + count * per) continue;
    ++seen[(r.sector - base) / per];
    ++by_tgid[r.tgid];
  }
  std::uint64_t lost = 0, doubled = 0;
  for (auto s : seen) {
    lost += s == 0;
    doubled += s > 1;
  }
  std::printf("blocks %llu lost %llu doubled %llu; records by tgid:",
              static_cast<unsigned long long>(count), static_cast<unsigned long long>(lost),
              static_cast<unsigned long long>(doubled));
  for (const auto& [t, n] : by_tgid) std::printf(" %u:%u", t, n);
  std::printf("\n");
  return lost || doubled ? 1 : 0;
}

int cmd_prio_check(char** a) {
  const auto recs = load_records(a[0]);
  const auto dev = static_cast<std::uint32_t>(std::stoul(a[1]));
  const auto tgid = static_cast<std::uint32_t>(std::stoul(a[2]));
  const auto cls = static_cast<unsigned>(std::stoul(a[3]));
  const auto level = static_cast<unsigned>(std::stoul(a[4]));
  std::uint64_t total = 0, matching = 0;
  for (const auto& r : recs) {
    const unsigned hint = (r.ioprio >> 3) & 0x3ff;
    if (r.dev != dev || r.op != V2P_DM_OP_WRITE || r.bytes == 0) continue;
    if (tgid ? (r.tgid != tgid || hint == 0) : hint != 0) continue;
    ++total;
    matching += (r.ioprio >> 13) == cls && (r.ioprio & 7) == level;
  }
  std::printf("%llu of %llu writes with class %u level %u\n",
              static_cast<unsigned long long>(matching), static_cast<unsigned long long>(total),
              cls, level);
  return total > 0 && matching == total ? 0 : 1;
}

int cmd_bench(char** a) {
  const std::string devs[2] = {a[0], a[1]};
  const int rounds = std::stoi(a[2]);
  const double seconds = std::stod(a[3]);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> drained{0};
  std::thread drainer([&] {
    v2p::pfilter::DmRingSource ring;
    while (!stop.load()) drained += ring.poll(50, [](const v2p::PhysEvent&) {});
  });
  std::vector<double> iops[2];
  for (int round = 0; round < rounds; ++round) {
    for (int k = 0; k < 2; ++k) {
      const int which = (round % 2 == 0) ? k : 1 - k;  // ABBA order
      const int fd = open(devs[which].c_str(), O_RDONLY | O_DIRECT);
      if (fd < 0) die("open " + devs[which]);
      std::uint64_t size = 0;
      if (ioctl(fd, BLKGETSIZE64, &size) != 0) die("BLKGETSIZE64");
      std::mt19937_64 rng(static_cast<std::uint64_t>(round));
      const std::uint64_t blocks = size / 4096;
      const std::uint64_t start = now_ns();
      const auto end = start + static_cast<std::uint64_t>(seconds * 1e9);
      std::uint64_t done = 0;
      run_uring(
          fd, 4096, 32, ~0ull, true, [&](std::uint64_t) { return (rng() % blocks) * 4096; },
          [&](const Io&, std::uint64_t) { ++done; }, [&] { return now_ns() < end; });
      iops[which].push_back(static_cast<double>(done) * 1e9 /
                            static_cast<double>(now_ns() - start));
      close(fd);
    }
  }
  stop = true;
  drainer.join();
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::printf("bench A(%s) rounds:", devs[0].c_str());
  for (double x : iops[0]) std::printf(" %.0f", x);
  std::printf("\nbench B(%s) rounds:", devs[1].c_str());
  for (double x : iops[1]) std::printf(" %.0f", x);
  // Each round ran A and B back to back: the ratio within a round cancels the drift of a
  // shared host between rounds.
  std::vector<double> pair;
  for (std::size_t i = 0; i < iops[0].size(); ++i) pair.push_back(iops[1][i] / iops[0][i]);
  std::printf("\nbench median A %.0f B %.0f ratio B/A %.3f pair-median %.3f records drained %llu\n",
              median(iops[0]), median(iops[1]), median(iops[1]) / median(iops[0]), median(pair),
              static_cast<unsigned long long>(drained.load()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) try {
  const std::string cmd = argc > 1 ? argv[1] : "";
  const int n = argc - 2;
  if (cmd == "write" && n == 6) return cmd_write(argv + 2);
  if (cmd == "rate" && n == 6) return cmd_rate(argv + 2);
  if (cmd == "seq" && n == 5) return cmd_seq(argv + 2);
  if (cmd == "drain" && n == 1) return cmd_drain(argv + 2);
  if (cmd == "ring-stats" && n == 0) return cmd_ring_stats();
  if (cmd == "count" && n == 5) return cmd_count(argv + 2);
  if (cmd == "prio-check" && n == 5) return cmd_prio_check(argv + 2);
  if (cmd == "bench" && n == 4) return cmd_bench(argv + 2);
  std::fprintf(stderr, "usage: see the comment at the top of tests/dm/dm_guest_tool.cpp\n");
  return 2;
} catch (const std::exception& e) {
  std::fprintf(stderr, "dm_guest_tool: %s\n", e.what());
  return 1;
}
