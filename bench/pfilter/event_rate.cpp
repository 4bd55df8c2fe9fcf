// How many events per second the pfilter delivers to user space, and whether it loses any.
// Usage: pfilter_event_rate [threads=2] [seconds=5] [ring MiB=16] [wakeup batch KiB=64]
// Load: threads reading 4 KiB with O_DIRECT at random offsets of a fresh zram device (RAM, bio
// based, no data: the cheapest real bios this kernel can make), each read = one queue + one
// completion event. Two phases:
//   sustained: load and consumer run together; offered = committed + lost events per second.
//   drain:     load runs with the consumer stopped until the ring is nearly full, then one thread
//              drains it: the single-core delivery rate, independent of how fast bios come.
#include <fcntl.h>
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

class Load {
 public:
  Load(const std::string& dev, int threads) {
    for (int t = 0; t < threads; ++t) {
      workers_.emplace_back([this, dev, t] { run(dev, t); });
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
  void run(const std::string& dev, int seed) {
    const int fd = ::open(dev.c_str(), O_RDONLY | O_DIRECT);
    if (fd < 0) return;
    void* buf = nullptr;
    if (::posix_memalign(&buf, 4096, 4096) != 0) return;
    std::minstd_rand rng(seed);
    std::uint64_t n = 0;
    while (!stop_) {
      const off_t off = static_cast<off_t>(rng() % (64 << 8)) * 4096;  // 64 MiB
      if (::pread(fd, buf, 4096, off) == 4096) ++n;
      if ((n & 1023) == 0) reads_ += 1024;
    }
    std::free(buf);
    ::close(fd);
  }
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> reads_{0};
  std::vector<std::thread> workers_;
};

void sustained(const std::string& dev, int threads, double secs, std::uint32_t ring_mib,
               std::uint32_t batch_kib) {
  v2p::pfilter::ProbeOptions o;
  o.wakeup_bytes = batch_kib << 10;
  o.devices = {v2p::pfilter::device_of_node(dev)};
  o.pin = false;
  o.ring_bytes = ring_mib << 20;
  auto probe = v2p::pfilter::Probe::attach(o);
  std::uint64_t delivered = 0;
  const auto count = [&delivered](const v2p::PhysEvent&) { ++delivered; };
  const auto start = Clock::now();
  {
    Load load(dev, threads);
    while (seconds_since(start) < secs) probe->poll(100, count);
    load.stop();
  }
  const double t = seconds_since(start);
  for (int i = 0; i < 3; ++i) probe->poll(50, count);
  const auto lost = probe->lost_events();
  fmt::print(
      "sustained (wakeup batch {} KiB): {} load threads, {:.1f} s: offered {:.0f} events/s, "
      "delivered {:.0f} events/s, lost {}\n",
      batch_kib, threads, t, static_cast<double>(probe->committed_events() + lost) / t,
      static_cast<double>(delivered) / t, lost);
}

// `record`: each event also goes through EventRecorder into a stream file, as `v2p probe
// --record` does; otherwise the consumer only counts.
void drain(const std::string& dev, int threads, std::uint32_t ring_mib, bool record) {
  v2p::pfilter::ProbeOptions o;
  o.devices = {v2p::pfilter::device_of_node(dev)};
  o.pin = false;
  o.ring_bytes = ring_mib << 20;
  auto probe = v2p::pfilter::Probe::attach(o);
  // 80-byte events + 8-byte ring headers; stop the load at ~90% so nothing is lost.
  const std::uint64_t target = (static_cast<std::uint64_t>(ring_mib) << 20) / 88 * 9 / 10;
  {
    Load load(dev, threads);
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
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const double secs = argc > 2 ? std::atof(argv[2]) : 5.0;
  const auto ring_mib = static_cast<std::uint32_t>(argc > 3 ? std::atoi(argv[3]) : 16);
  const auto batch_kib = static_cast<std::uint32_t>(argc > 4 ? std::atoi(argv[4]) : 64);
  try {
    ZramDevice zram;
    fmt::print("load: {} threads of 4 KiB O_DIRECT random reads on {} (zram, 64 MiB)\n", threads,
               zram.path());
    sustained(zram.path(), threads, secs, ring_mib, 0);
    sustained(zram.path(), threads, secs, ring_mib, batch_kib);
    drain(zram.path(), threads, ring_mib, false);
    drain(zram.path(), threads, ring_mib, true);
  } catch (const std::exception& e) {
    fmt::print(stderr, "pfilter_event_rate: {}\n", e.what());
    return 1;
  }
  return 0;
}
