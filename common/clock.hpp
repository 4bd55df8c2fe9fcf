// CLOCK_MONOTONIC in nanoseconds: the clock bpf_ktime_get_ns() reads, so user-space and kernel
// timestamps of the same I/O are comparable.
#pragma once

#include <cstdint>
#include <ctime>

namespace v2p {

inline std::uint64_t monotonic_ns() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

}  // namespace v2p
