#include "vfilter/record_seq.hpp"

#include <atomic>

namespace v2p::vfilter {

namespace {
std::atomic<std::uint64_t> g_seq{0};
}  // namespace

std::uint64_t next_record_seq() noexcept {
  return g_seq.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace v2p::vfilter
