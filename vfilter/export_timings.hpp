// The export layer's latency: NBD request in (header read) -> reply out (sent), per vdisk and
// op class, kept by the connections with relaxed atomic adds and read by the agent sink's
// sender, which sends the cumulative figures to the agent (ingest::ExportLatency). Self-contained
// on purpose: the data path only calls get() once per connection and add() once per request.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

#include "common/ingest_wire.hpp"
#include "common/latency_histogram.hpp"

namespace v2p::vfilter {

class ExportTimings {
 public:
  struct Vdisk {
    std::uint32_t vm_id = 0;
    std::uint32_t vdisk_id = 0;
    std::array<AtomicOpLayerStats, kOpClasses> ops;
    void add(std::size_t op_class, std::uint64_t bytes, std::uint64_t ns) noexcept {
      ops[op_class].add(bytes, ns);
    }
  };
  // The vdisk's counters (created on first use); the pointer stays valid for the object's life.
  Vdisk* get(std::uint32_t vm_id, std::uint32_t vdisk_id);
  // One frame per vdisk and op class that saw a request.
  [[nodiscard]] std::vector<ingest::ExportLatency> snapshot() const;

 private:
  mutable std::mutex mu_;
  std::deque<Vdisk> vdisks_;  // a deque: get()'s pointers survive growth
};

}  // namespace v2p::vfilter
