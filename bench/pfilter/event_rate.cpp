// How many events per second the pfilter delivers to user space, and whether it loses any.
// Usage: pfilter_event_rate [threads=2] [seconds=5] [ring MiB=16] [wakeup batch KiB=64]
//                           [paced M events/s=1] [load=loop|partition|writeback|zram]
//                           [reads per submission=256]
//                           [consumer CPU=-1 (not pinned)]
// Loads (real bios, each traced by block_bio_queue and, with completions, completed):
//   loop  (default) 512-byte O_DIRECT reads of a loop device on a file in a tmpfs of our own
//         (logical block 512, buffered backing: no disk), through io_uring, `reads per
//         submission` SQEs per io_uring_enter, at consecutive sectors from a random start. Each
//         read is one bio (one queue event); the block layer merges a submission's bios into a
//         few requests (at most max_sectors_kb = 64, i.e. 128 bios, each), so the loop driver
//         does one copy per request while the probe sees every bio, and its completion program
//         notes all the bios of a request in the CPU's completion batch (16 to a ring record).
//   partition  the same on partition 1 of that loop device (BLKPG): each bio is also remapped
//         from the partition to the disk, one remap event more, as on any partitioned disk.
//   writeback  512-byte buffered writes of the loop device written back (one bio per buffer
//         head), see Load::run_writeback.
//   zram  4 KiB O_DIRECT reads at random offsets of a fresh zram device (bio based, one
//         completion per bio).
// Phases, with completions on and then off:
//   no probe:  the load alone, what the machine can offer at all.
//   sustained: load and consumer run together, as fast as the load goes (wakeup per event, then
//              batched wakeups) and paced to a fixed offered rate; offered = committed + lost.
//   drain:     load runs with the consumer stopped until the ring is nearly full, then one thread
//              drains it: the single-core delivery rate, independent of how fast bios come.
// The consumer (the main thread) runs on `consumer CPU` when given (the load threads may use
// every CPU).
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <fmt/core.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/blkpg_partition.hpp"
#include "common/error.hpp"
#include "common/record_file.hpp"
#include "common/subprocess.hpp"
#include "pfilter/probe.hpp"
#include "pfilter/recorder.hpp"
#include "pfilter/topology.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A zram device of our own (hot_add), removed again on destruction.
class ZramDevice {
 public:
  ZramDevice() {
    std::ifstream add("/sys/class/zram-control/hot_add");
    if (!(add >> id_)) throw v2p::Error("cannot add a zram device (is the zram module loaded?)");
    std::ofstream("/sys/block/zram" + std::to_string(id_) + "/disksize") << "64M";
    path_ = "/dev/zram" + std::to_string(id_);
  }
  ~ZramDevice() { std::ofstream("/sys/class/zram-control/hot_remove") << id_; }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  int id_ = -1;
  std::string path_;
};

// A loop device (logical block 512, no direct I/O) on a 64 MiB file in a tmpfs mounted for the
// run; all of it undone on destruction.
class TmpfsLoopDevice {
 public:
  // partitioned: the load goes to partition 1 (all but the first MiB), so each bio is also
  // remapped to the disk (one more event).
  explicit TmpfsLoopDevice(bool partitioned = false) {
    char dir[] = "/tmp/v2p-event-rate.XXXXXX";
    if (::mkdtemp(dir) == nullptr) throw v2p::Error("cannot create a scratch directory");
    dir_ = dir;
    if (::mount("tmpfs", dir, "tmpfs", 0, "size=80m") != 0) {
      std::filesystem::remove(dir_);
      throw v2p::Error("cannot mount a tmpfs on " + dir_);
    }
    try {
      const auto file = dir_ + "/backing.img";
      // 64 MiB + 512 bytes: a size that is an odd multiple of 512 makes the kernel give the
      // device's page cache 512-byte blocks (set_init_blocksize), so written-back pages make
      // one 512-byte bio per buffer head (the writeback load).
      v2p::run_checked({"truncate", "-s", std::to_string((64 << 20) + 512), file});
      path_ = v2p::run_checked({"losetup", "--find", "--show", "--sector-size", "512", file});
      while (!path_.empty() && (path_.back() == '\n' || path_.back() == ' ')) path_.pop_back();
      // Requests of at most 128 merged 512-byte bios.
      std::ofstream("/sys/block/" + path_.substr(5) + "/queue/max_sectors_kb") << "64";
      if (partitioned) partition_.emplace(path_, 1 << 20, 63 << 20, dir_);
    } catch (...) {
      cleanup();
      throw;
    }
  }
  ~TmpfsLoopDevice() { cleanup(); }
  // The node the load uses: the partition, or the whole device.
  [[nodiscard]] std::string path() const {
    return partition_ ? partition_->node().string() : path_;
  }

 private:
  void cleanup() {
    partition_.reset();
    if (!path_.empty()) v2p::run_command({"losetup", "-d", path_});
    ::umount2(dir_.c_str(), MNT_DETACH);
    std::error_code ec;
    std::filesystem::remove(dir_, ec);
  }
  std::string dir_;
  std::string path_;
  std::optional<v2p::BlkpgPartition> partition_;
};

struct Workload {
  std::string dev;
  std::uint32_t block = 4096;     // bytes per read
  std::uint64_t span = 64 << 20;  // bytes of the device used
  bool consecutive = false;       // a submission's reads at consecutive offsets (merge)
  bool writeback = false;         // buffered writes of `batch` blocks, then sync_file_range
  bool remapped = false;          // on a partition: each bio is also a remap event
  unsigned batch = 64;            // reads per io_uring_enter
};

// O_DIRECT reads of the workload's device from `threads` threads, each through its own io_uring,
// w.batch reads per io_uring_enter (one syscall per batch instead of one per read). rate_per_s > 0
// paces the threads to that many reads per second in total (0: as fast as they go).
class Load {
 public:
  Load(const Workload& w, int threads, double rate_per_s) {
    for (int t = 0; t < threads; ++t) {
      workers_.emplace_back([this, w, t, threads, rate_per_s] { run(w, t, rate_per_s / threads); });
    }
  }
  ~Load() { stop(); }
  void stop() {
    stop_ = true;
    for (auto& w : workers_) {
      if (w.joinable()) w.join();
    }
  }
  [[nodiscard]] std::uint64_t reads() const { return reads_; }

 private:
  void run(const Workload& w, int seed, double rate_per_s) {
    if (w.writeback) {
      run_writeback(w, seed, rate_per_s);
      return;
    }
    // Every CPU, whatever the consumer (which started this thread) is pinned to.
    cpu_set_t all;
    CPU_ZERO(&all);
    for (int cpu = 0;
         cpu < CPU_SETSIZE && cpu < static_cast<int>(std::thread::hardware_concurrency()); ++cpu)
      CPU_SET(cpu, &all);
    ::sched_setaffinity(0, sizeof all, &all);
    const int fd = ::open(w.dev.c_str(), O_RDONLY | O_DIRECT);
    if (fd < 0) return;
    const std::size_t bytes = std::size_t{w.block} * w.batch;
    void* buf = nullptr;
    if (::posix_memalign(&buf, 4096, bytes) != 0) return;
    io_uring ring{};
    // One task submits and reaps, completions run when it waits: fewer interrupts and task work.
    if (io_uring_queue_init(w.batch, &ring,
                            IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN) < 0 &&
        io_uring_queue_init(w.batch, &ring, 0) < 0) {
      return;
    }
    // Registered buffers: no pinning of user pages per read.
    const iovec iov{buf, bytes};
    const bool fixed = io_uring_register_buffers(&ring, &iov, 1) == 0;
    std::minstd_rand rng(seed);
    const std::uint64_t blocks = w.span / w.block;
    const auto start = Clock::now();
    std::uint64_t n = 0;
    while (!stop_) {
      const std::uint64_t first = rng() % (blocks - w.batch);
      for (unsigned i = 0; i < w.batch; ++i) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring);
        const std::uint64_t block = w.consecutive ? first + i : rng() % blocks;
        const auto off = block * w.block;
        char* at = static_cast<char*>(buf) + std::size_t{w.block} * i;
        if (fixed) {
          io_uring_prep_read_fixed(sqe, fd, at, w.block, off, 0);
        } else {
          io_uring_prep_read(sqe, fd, at, w.block, off);
        }
      }
      io_uring_submit_and_wait(&ring, w.batch);
      io_uring_cqe* cqe = nullptr;
      unsigned head = 0;
      unsigned seen = 0;
      io_uring_for_each_cqe(&ring, head, cqe) {
        ++seen;
      }
      io_uring_cq_advance(&ring, seen);
      n += seen;
      reads_ += seen;
      if (rate_per_s > 0) {
        // Wait until this thread's share of the schedule has caught up with what it did.
        const auto due = start + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(n / rate_per_s));
        while (!stop_ && Clock::now() < due)
          std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
    io_uring_queue_exit(&ring);
    std::free(buf);
    ::close(fd);
  }
  // Writes w.batch blocks through the page cache of the block device, then has them written
  // back and waits (sync_file_range): the kernel makes one bio per 512-byte buffer head (the
  // device's block size is 512, see TmpfsLoopDevice), all from one system call. Each thread
  // writes its own part of the device, round robin.
  void run_writeback(const Workload& w, int seed, double rate_per_s) {
    const int fd = ::open(w.dev.c_str(), O_RDWR);
    if (fd < 0) return;
    const std::size_t bytes = std::size_t{w.block} * w.batch;
    std::vector<char> buf(bytes, static_cast<char>(seed));
    const std::uint64_t part = w.span / 2 / bytes * bytes;  // two parts, one per thread
    const std::uint64_t base = (static_cast<std::uint64_t>(seed) % 2) * part;
    const auto start = Clock::now();
    std::uint64_t n = 0;
    std::uint64_t at = 0;
    while (!stop_) {
      const auto off = static_cast<off_t>(base + at);
      if (::pwrite(fd, buf.data(), bytes, off) != static_cast<ssize_t>(bytes)) break;
      if (::sync_file_range(fd, off, static_cast<off_t>(bytes),
                            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                SYNC_FILE_RANGE_WAIT_AFTER) != 0) {
        break;
      }
      at = (at + bytes) % part;
      n += w.batch;
      reads_ += w.batch;
      if (rate_per_s > 0) {
        const auto due = start + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(n / rate_per_s));
        while (!stop_ && Clock::now() < due)
          std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
    ::close(fd);
  }
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> reads_{0};
  std::vector<std::thread> workers_;
};

struct Config {
  int threads = 2;
  double secs = 5;
  std::uint32_t ring_mib = 16;
  std::uint32_t batch_kib = 64;
  bool completions = true;  // two events per read (queue + completion), else one
};

v2p::pfilter::ProbeOptions probe_options(const Workload& w, const Config& c,
                                         std::uint32_t batch_kib) {
  v2p::pfilter::ProbeOptions o;
  o.wakeup_bytes = batch_kib << 10;
  o.devices = {v2p::pfilter::device_of_node(w.dev)};
  o.completions = c.completions;
  o.every_bio = true;  // the delivery rate of the full stream: re-reads must not be suppressed
  o.pin = false;
  o.ring_bytes = c.ring_mib << 20;
  return o;
}

// Queue, remap on a partition, completion.
double events_per_read(const Workload& w, const Config& c) {
  return 1.0 + (w.remapped ? 1 : 0) + (c.completions ? 1 : 0);
}

std::string events_label(const Workload& w, const Config& c) {
  return std::string("queue") + (w.remapped ? " + remap" : "") +
         (c.completions ? " + completion" : "");
}

// The load alone, no probe: what the machine can offer.
void unprobed(const Workload& w, const Config& c) {
  const auto start = Clock::now();
  Load load(w, c.threads, 0);
  std::this_thread::sleep_for(std::chrono::duration<double>(c.secs));
  load.stop();
  const double t = seconds_since(start);
  const double per_read = events_per_read(w, c);
  fmt::print("no probe: {} load threads, {:.1f} s: {:.0f} reads/s (= {:.0f} events/s if probed)\n",
             c.threads, t, static_cast<double>(load.reads()) / t,
             per_read * static_cast<double>(load.reads()) / t);
}

// events_per_s > 0: the load is paced to offer about that many events per second.
void sustained(const Workload& w, const Config& c, std::uint32_t batch_kib, double events_per_s) {
  auto probe = v2p::pfilter::Probe::attach(probe_options(w, c, batch_kib));
  std::uint64_t delivered = 0;
  const auto count = [&delivered](const v2p::PhysEvent&) { ++delivered; };
  const double per_read = events_per_read(w, c);
  const auto start = Clock::now();
  {
    Load load(w, c.threads, events_per_s / per_read);
    while (seconds_since(start) < c.secs) probe->poll(100, count);
    load.stop();
  }
  const double t = seconds_since(start);
  for (int i = 0; i < 3; ++i) probe->poll(50, count);
  const auto lost = probe->lost_events();
  const auto committed = probe->committed_events();
  fmt::print(
      "sustained ({}, wakeup batch {} KiB{}): {} load threads, {:.1f} s: offered {:.0f} "
      "events/s, delivered {:.0f} events/s, lost {}{}\n",
      events_label(w, c), batch_kib,
      events_per_s > 0 ? fmt::format(", paced to {:.1f} M/s", events_per_s / 1e6) : "", c.threads,
      t, static_cast<double>(committed + lost) / t, static_cast<double>(delivered) / t, lost,
      delivered == committed
          ? ""
          : fmt::format(" (committed {} != delivered {})", committed, delivered));
}

// `record`: each event also goes through EventRecorder into a stream file, as `v2p probe
// --record` does; otherwise the consumer only counts.
void drain(const Workload& w, const Config& c, bool record) {
  const std::uint32_t ring_mib = c.ring_mib;
  auto probe = v2p::pfilter::Probe::attach(probe_options(w, c, 0));
  // 80-byte events + 8-byte ring headers; stop the load at ~90% so nothing is lost.
  const std::uint64_t target = (static_cast<std::uint64_t>(ring_mib) << 20) / 88 * 9 / 10;
  {
    Load load(w, c.threads, 0);
    const auto start = Clock::now();
    while (probe->committed_events() < target && seconds_since(start) < 30) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    load.stop();
  }
  const auto queued = probe->committed_events();
  const auto file = std::filesystem::temp_directory_path() /
                    ("v2p-event-rate-" + std::to_string(::getpid()) + ".v2p");
  std::optional<v2p::StreamWriter> out;
  std::optional<v2p::pfilter::EventRecorder> recorder;
  if (record) {
    out.emplace(file);
    recorder.emplace(*out);
  }
  std::uint64_t delivered = 0;
  const auto start = Clock::now();
  while (delivered < queued) {
    const auto n = probe->poll(0, [&](const v2p::PhysEvent& e) {
      ++delivered;
      if (recorder) recorder->record(e);
    });
    if (n == 0) break;
  }
  if (out) out->flush();
  const double t = seconds_since(start);
  out.reset();
  std::filesystem::remove(file);
  fmt::print(
      "drain{}: {} events queued, {} delivered in {:.3f} s on one thread: {:.2f} M events/s, lost "
      "{}\n",
      record ? " + record to file" : " (count only)", queued, delivered, t,
      static_cast<double>(delivered) / t / 1e6, probe->lost_events());
}

}  // namespace

// Pins the calling thread (the consumer) to cpu; threads it starts later inherit that, so the
// load threads widen theirs again (see Load).
void pin_consumer(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0)
    throw v2p::Error("cannot pin to CPU " + std::to_string(cpu));
}

int main(int argc, char** argv) {
  Config c;
  if (argc > 1) c.threads = std::atoi(argv[1]);
  if (argc > 2) c.secs = std::atof(argv[2]);
  if (argc > 3) c.ring_mib = static_cast<std::uint32_t>(std::atoi(argv[3]));
  if (argc > 4) c.batch_kib = static_cast<std::uint32_t>(std::atoi(argv[4]));
  const double paced = argc > 5 ? std::atof(argv[5]) * 1e6 : 1e6;
  const std::string load = argc > 6 ? argv[6] : "loop";
  const int consumer_cpu = argc > 8 ? std::atoi(argv[8]) : -1;
  try {
    std::optional<ZramDevice> zram;
    std::optional<TmpfsLoopDevice> loop;
    Workload w;
    if (load == "zram") {
      zram.emplace();
      w.dev = zram->path();
      w.batch = 64;
    } else if (load == "loop") {
      loop.emplace();
      w.dev = loop->path();
      w.block = 512;
      w.consecutive = true;
      w.batch = 256;
    } else if (load == "partition") {
      loop.emplace(/*partitioned=*/true);
      w.dev = loop->path();
      w.block = 512;
      w.span = 63 << 20;
      w.consecutive = true;
      w.remapped = true;
      w.batch = 256;
    } else if (load == "writeback") {
      loop.emplace();
      w.dev = loop->path();
      w.block = 512;
      w.writeback = true;
      w.batch = 2048;  // 1 MiB per system call pair
    } else {
      throw v2p::Error("unknown load " + load + " (loop, partition, writeback, zram)");
    }
    if (argc > 7) w.batch = static_cast<unsigned>(std::atoi(argv[7]));
    pin_consumer(consumer_cpu);
    fmt::print(
        "load: {} threads of {}-byte {} on {} ({}, 64 MiB), {} per system call; consumer {}\n",
        c.threads, w.block,
        w.writeback     ? "buffered writes written back by sync_file_range"
        : w.consecutive ? "consecutive O_DIRECT reads through io_uring"
                        : "random O_DIRECT reads through io_uring",
        w.dev, load, w.batch,
        consumer_cpu < 0 ? std::string("not pinned") : "on CPU " + std::to_string(consumer_cpu));
    for (const bool completions : {true, false}) {
      c.completions = completions;
      unprobed(w, c);
      sustained(w, c, 0, 0);
      sustained(w, c, c.batch_kib, 0);
      sustained(w, c, c.batch_kib, paced);
    }
    c.completions = true;
    drain(w, c, false);
    drain(w, c, true);
  } catch (const std::exception& e) {
    fmt::print(stderr, "pfilter_event_rate: {}\n", e.what());
    return 1;
  }
  return 0;
}
