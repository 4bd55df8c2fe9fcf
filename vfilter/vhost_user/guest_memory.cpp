#include "vfilter/vhost_user/guest_memory.hpp"

#include <sys/mman.h>

#include <fmt/core.h>

#include <cstring>

namespace v2p::vfilter::vhost_user {

GuestMemory::~GuestMemory() {
  for (const auto& r : regions_) {
    if (r.map_base != nullptr) ::munmap(r.map_base, r.map_len);
  }
}

std::string GuestMemory::map(std::span<const MemRegion> regions, std::span<const int> fds) {
  if (regions.size() != fds.size()) {
    return fmt::format("{} memory regions but {} fds", regions.size(), fds.size());
  }
  for (std::size_t i = 0; i < regions.size(); ++i) {
    const MemRegion& m = regions[i];
    const std::uint64_t len = m.memory_size + m.mmap_offset;
    if (m.memory_size == 0 || len < m.memory_size ||
        m.guest_phys_addr + m.memory_size < m.guest_phys_addr ||
        m.userspace_addr + m.memory_size < m.userspace_addr || len > (1ULL << 48)) {
      return fmt::format("memory region {} has an impossible size or address", i);
    }
    void* base = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0);
    if (base == MAP_FAILED) {
      return fmt::format("cannot map memory region {}: {}", i, std::strerror(errno));
    }
    regions_.push_back({m.guest_phys_addr, m.userspace_addr, m.memory_size,
                        static_cast<std::byte*>(base) + m.mmap_offset, base, len});
  }
  return {};
}

void GuestMemory::add_buffer(std::uint64_t gpa, std::uint64_t uva, std::span<std::byte> memory) {
  regions_.push_back({gpa, uva, memory.size(), memory.data(), nullptr, 0});
}

namespace {

// Offset arithmetic that cannot wrap: addr - start < size and len <= size - (addr - start).
template <class Base>
std::byte* translate(const auto& regions, Base base, std::uint64_t addr,
                     std::uint64_t len) noexcept {
  for (const auto& r : regions) {
    const std::uint64_t start = base(r);
    if (addr < start) continue;
    const std::uint64_t off = addr - start;
    if (off >= r.size || len > r.size - off) continue;
    return r.host + off;
  }
  return nullptr;
}

}  // namespace

std::byte* GuestMemory::gpa(std::uint64_t addr, std::uint64_t len) const noexcept {
  return translate(
      regions_, [](const Region& r) { return r.gpa; }, addr, len);
}

std::byte* GuestMemory::uva(std::uint64_t addr, std::uint64_t len) const noexcept {
  return translate(
      regions_, [](const Region& r) { return r.uva; }, addr, len);
}

}  // namespace v2p::vfilter::vhost_user
