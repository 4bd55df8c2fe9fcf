// Random 4k (or --bs) I/O at a queue depth against any vhost-user-blk export (v2p serve
// --vhost-user, qemu-storage-daemon's vhost-user-blk export), through the project's driver
// (tests/vfilter/vhost_user_driver.*), so both servers are measured by the same client.
// Prints one line: kIOPS and the median and p99 completion latency in microseconds.
//
//   vhost_user_bench --socket PATH [--rw randread|randwrite] [--qd N] [--bs BYTES]
//                    [--seconds S] [--span-mib N]
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "vfilter/vhost_user_driver.hpp"

using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  std::string socket, rw = "randread";
  unsigned qd = 1, seconds = 5;
  std::uint32_t bs = 4096;
  std::uint64_t span_mib = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--socket")
      socket = v;
    else if (k == "--rw")
      rw = v;
    else if (k == "--qd")
      qd = static_cast<unsigned>(std::stoul(v));
    else if (k == "--bs")
      bs = static_cast<std::uint32_t>(std::stoul(v));
    else if (k == "--seconds")
      seconds = static_cast<unsigned>(std::stoul(v));
    else if (k == "--span-mib")
      span_mib = std::stoull(v);
  }
  if (socket.empty() || qd == 0 || bs % 512 != 0) {
    fmt::print(stderr, "usage: {} --socket PATH [--rw randread|randwrite] [--qd N] [--bs B]\n",
               argv[0]);
    return 2;
  }
  v2p::vfilter::testing::VhostUserDriver d(socket, {1, 256, bs});
  if (qd > d.max_slots()) qd = d.max_slots();
  const std::uint64_t span = span_mib ? span_mib << 20 : d.capacity_bytes();
  const std::uint64_t blocks = span / bs;
  const bool write = rw == "randwrite";
  std::mt19937_64 rng(42);
  std::vector<std::byte> fill(bs, std::byte{0x5a});
  for (unsigned s = 0; s < qd; ++s) std::memcpy(d.slot_data(0, s), fill.data(), bs);
  std::vector<Clock::time_point> started(qd);
  std::vector<double> lat_us;
  lat_us.reserve(1 << 20);
  const auto submit = [&](std::uint32_t slot, bool kick) {
    started[slot] = Clock::now();
    d.submit(0, slot, write, (rng() % blocks) * bs, bs, kick);
  };
  for (unsigned s = 0; s < qd; ++s) submit(s, s + 1 == qd);
  const auto end = Clock::now() + std::chrono::seconds(seconds);
  std::uint64_t done_count = 0, errors = 0;
  std::vector<std::uint32_t> done;
  while (Clock::now() < end) {
    done.clear();
    d.reap(0, done, 1000);
    const auto now = Clock::now();
    for (std::size_t k = 0; k < done.size(); ++k) {
      const std::uint32_t slot = done[k];
      if (d.status(0, slot) != 0) ++errors;
      lat_us.push_back(std::chrono::duration<double, std::micro>(now - started[slot]).count());
      ++done_count;
      submit(slot, k + 1 == done.size());
    }
  }
  // Drain what is still in flight before the session closes.
  std::size_t outstanding = qd;
  while (outstanding > 0) {
    done.clear();
    if (d.reap(0, done, 5000) == 0) break;
    outstanding -= std::min(outstanding, done.size());
  }
  std::sort(lat_us.begin(), lat_us.end());
  const auto pct = [&](double p) {
    return lat_us.empty() ? 0.0 : lat_us[static_cast<std::size_t>(p * (lat_us.size() - 1))];
  };
  fmt::print("kiops={:.1f} p50_us={:.1f} p99_us={:.1f} errors={}\n",
             static_cast<double>(done_count) / seconds / 1000.0, pct(0.5), pct(0.99), errors);
  return errors == 0 ? 0 : 1;
}
