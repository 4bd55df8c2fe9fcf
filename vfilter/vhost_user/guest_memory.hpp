// The guest's memory as the frontend shares it (SET_MEM_TABLE): regions mapped from the fds it
// sends, and address translation with bounds checks. Every address a guest or the frontend
// hands us goes through gpa()/uva(): a range that does not lie wholly inside one region gives
// null, never a pointer past a mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "vfilter/vhost_user/wire.hpp"

namespace v2p::vfilter::vhost_user {

class GuestMemory {
 public:
  GuestMemory() = default;
  ~GuestMemory();
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;

  // Maps each region from its fd (which stays the caller's). Empty string on success, else why.
  std::string map(std::span<const MemRegion> regions, std::span<const int> fds);
  // A region over memory the caller owns and keeps alive (tests and fuzzers).
  void add_buffer(std::uint64_t gpa, std::uint64_t uva, std::span<std::byte> memory);

  // Host pointer for [addr, addr + len) in guest-physical / frontend-virtual addresses.
  [[nodiscard]] std::byte* gpa(std::uint64_t addr, std::uint64_t len) const noexcept;
  [[nodiscard]] std::byte* uva(std::uint64_t addr, std::uint64_t len) const noexcept;
  [[nodiscard]] bool empty() const noexcept { return regions_.empty(); }

 private:
  struct Region {
    std::uint64_t gpa;
    std::uint64_t uva;
    std::uint64_t size;
    std::byte* host;
    void* map_base;  // null for add_buffer regions
    std::size_t map_len;
  };
  std::vector<Region> regions_;
};

}  // namespace v2p::vfilter::vhost_user
