// How many events per second the pfilter delivers to user space, and whether it loses any.
// Usage: pfilter_event_rate [threads=2] [seconds=5] [ring MiB=16] [wakeup batch KiB=64]
//                           [paced M events/s=1]
// Load: threads reading 4 KiB with O_DIRECT at random offsets of a fresh zram device (RAM, bio
// based, no data: the cheapest real bios this kernel can make) through io_uring, 64 reads per
// submission; each read = one queue event, plus one completion event when completions are on.
// Phases, with completions on and then off:
//   no probe:  the load alone, what the machine can offer at all.
//   sustained: load and consumer run together, as fast as the load goes (wakeup per event, then
//              batched wakeups) and paced to a fixed offered rate; offered = committed + lost.
//   drain:     load runs with the consumer stopped until the ring is nearly full, then one thread
//              drains it: the single-core delivery rate, independent of how fast bios come.
#include <fcntl.h>
#include <liburing.h>
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

#include "common/error.hpp"
#include "common/record_file.hpp"
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

// Reads of 4 KiB with O_DIRECT at random offsets of the zram device from `threads` threads, each
// through its own io_uring, kQueueDepth reads per io_uring_enter (one syscall per batch instead of
// one per read: what lets two vCPUs offer more than 2 M events/s). rate_per_s > 0 paces the
// threads to that many reads per second in total (0: as fast as they go).
class Load {
 public:
  static constexpr unsigned kQueueDepth = 64;

  Load(const std::string& dev, int threads, double rate_per_s) {
    for (int t = 0; t < threads; ++t) {
      workers_.emplace_back(
          [this, dev, t, threads, rate_per_s] { run(dev, t, rate_per_s / threads); });
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
  void run(const std::string& dev, int seed, double rate_per_s) {
    const int fd = ::open(dev.c_str(), O_RDONLY | O_DIRECT);
    if (fd < 0) return;
    void* buf = nullptr;
    if (::posix_memalign(&buf, 4096, 4096 * kQueueDepth) != 0) return;
    io_uring ring{};
    // One task submits and reaps, completions run when it waits: fewer interrupts and task work.
    if (io_uring_queue_init(kQueueDepth, &ring,
                            IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN) < 0 &&
        io_uring_queue_init(kQueueDepth, &ring, 0) < 0) {
      return;
    }
    // Registered buffers: no pinning of user pages per read.
    const iovec iov{buf, 4096 * kQueueDepth};
    const bool fixed = io_uring_register_buffers(&ring, &iov, 1) == 0;
    std::minstd_rand rng(seed);
    const auto start = Clock::now();
    std::uint64_t n = 0;
    while (!stop_) {
      for (unsigned i = 0; i < kQueueDepth; ++i) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring);
        const auto off = static_cast<std::uint64_t>(rng() % (64 << 8)) * 4096;  // 64 MiB
        char* at = static_cast<char*>(buf) + 4096 * i;
        if (fixed) {
          io_uring_prep_read_fixed(sqe, fd, at, 4096, off, 0);
        } else {
          io_uring_prep_read(sqe, fd, at, 4096, off);
        }
      }
      io_uring_submit_and_wait(&ring, kQueueDepth);
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

v2p::pfilter::ProbeOptions probe_options(const std::string& dev, const Config& c,
                                         std::uint32_t batch_kib) {
  v2p::pfilter::ProbeOptions o;
  o.wakeup_bytes = batch_kib << 10;
  o.devices = {v2p::pfilter::device_of_node(dev)};
  o.completions = c.completions;
  o.pin = false;
  o.ring_bytes = c.ring_mib << 20;
  return o;
}

// The load alone, no probe: what the machine can offer.
void unprobed(const std::string& dev, const Config& c) {
  const auto start = Clock::now();
  Load load(dev, c.threads, 0);
  std::this_thread::sleep_for(std::chrono::duration<double>(c.secs));
  load.stop();
  const double t = seconds_since(start);
  const double per_read = c.completions ? 2 : 1;
  fmt::print("no probe: {} load threads, {:.1f} s: {:.0f} reads/s (= {:.0f} events/s if probed)\n",
             c.threads, t, static_cast<double>(load.reads()) / t,
             per_read * static_cast<double>(load.reads()) / t);
}

// events_per_s > 0: the load is paced to offer about that many events per second.
void sustained(const std::string& dev, const Config& c, std::uint32_t batch_kib,
               double events_per_s) {
  auto probe = v2p::pfilter::Probe::attach(probe_options(dev, c, batch_kib));
  std::uint64_t delivered = 0;
  const auto count = [&delivered](const v2p::PhysEvent&) { ++delivered; };
  const double per_read = c.completions ? 2 : 1;
  const auto start = Clock::now();
  {
    Load load(dev, c.threads, events_per_s / per_read);
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
      c.completions ? "queue + completion" : "queue only", batch_kib,
      events_per_s > 0 ? fmt::format(", paced to {:.1f} M/s", events_per_s / 1e6) : "", c.threads,
      t, static_cast<double>(committed + lost) / t, static_cast<double>(delivered) / t, lost,
      delivered == committed
          ? ""
          : fmt::format(" (committed {} != delivered {})", committed, delivered));
}

// `record`: each event also goes through EventRecorder into a stream file, as `v2p probe
// --record` does; otherwise the consumer only counts.
void drain(const std::string& dev, const Config& c, bool record) {
  const std::uint32_t ring_mib = c.ring_mib;
  auto probe = v2p::pfilter::Probe::attach(probe_options(dev, c, 0));
  // 80-byte events + 8-byte ring headers; stop the load at ~90% so nothing is lost.
  const std::uint64_t target = (static_cast<std::uint64_t>(ring_mib) << 20) / 88 * 9 / 10;
  {
    Load load(dev, c.threads, 0);
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

int main(int argc, char** argv) {
  Config c;
  if (argc > 1) c.threads = std::atoi(argv[1]);
  if (argc > 2) c.secs = std::atof(argv[2]);
  if (argc > 3) c.ring_mib = static_cast<std::uint32_t>(std::atoi(argv[3]));
  if (argc > 4) c.batch_kib = static_cast<std::uint32_t>(std::atoi(argv[4]));
  const double paced = argc > 5 ? std::atof(argv[5]) * 1e6 : 1e6;
  try {
    ZramDevice zram;
    fmt::print(
        "load: {} threads of 4 KiB O_DIRECT random reads on {} (zram, 64 MiB) through io_uring, "
        "{} per submission\n",
        c.threads, zram.path(), Load::kQueueDepth);
    for (const bool completions : {true, false}) {
      c.completions = completions;
      unprobed(zram.path(), c);
      sustained(zram.path(), c, 0, 0);
      sustained(zram.path(), c, c.batch_kib, 0);
      sustained(zram.path(), c, c.batch_kib, paced);
    }
    c.completions = true;
    drain(zram.path(), c, false);
    drain(zram.path(), c, true);
  } catch (const std::exception& e) {
    fmt::print(stderr, "pfilter_event_rate: {}\n", e.what());
    return 1;
  }
  return 0;
}
