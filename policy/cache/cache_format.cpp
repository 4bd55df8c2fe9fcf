#include "policy/cache/cache_format.hpp"

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>

#include "common/crc32c.hpp"
#include "common/error.hpp"

namespace v2p::cache {
namespace {

static_assert(std::endian::native == std::endian::little, "the cache file is little-endian");

// Fixed layouts at the start of the 4096-byte blocks; the rest is zero.
struct RawSuper {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t header_crc;  // over the first sizeof(RawSuper) bytes with this field 0
  std::uint32_t block_bytes;
  std::uint32_t slots;
  std::uint64_t bitmap_bytes;
  std::uint64_t data_start;
  std::uint64_t next_generation;
  std::uint32_t clean;
  std::uint32_t bitmap_crc;
};

struct RawEntry {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t header_crc;
  std::uint32_t device;  // kernel encoding
  std::uint32_t slot;
  std::uint64_t sector;
  std::uint64_t generation;
  std::uint32_t length;
  std::uint32_t data_crc;
  char vm[kVmNameBytes];
};

// Both layouts keep their CRC at byte 12; it covers the whole 4096-byte block (with itself as 0),
// so a flipped byte anywhere in the block is caught, including the zero padding.
constexpr std::size_t kCrcAt = 12;
static_assert(offsetof(RawSuper, header_crc) == kCrcAt && offsetof(RawEntry, header_crc) == kCrcAt);

std::uint32_t block_crc(std::span<const std::byte, kHeaderBytes> in) {
  const std::byte zero[4] = {};
  std::uint32_t c = crc32c(in.first(kCrcAt));
  c = crc32c(zero, c);
  return crc32c(in.subspan(kCrcAt + 4), c);
}

template <class Raw>
void seal(const Raw& r, std::span<std::byte, kHeaderBytes> out) {
  std::fill(out.begin(), out.end(), std::byte{0});
  std::memcpy(out.data(), &r, sizeof r);
  const std::uint32_t c = block_crc(out);
  std::memcpy(out.data() + kCrcAt, &c, 4);
}

constexpr std::uint64_t round_up(std::uint64_t v, std::uint64_t a) {
  return (v + a - 1) / a * a;
}

}  // namespace

Geometry plan_geometry(std::uint64_t file_bytes, std::uint32_t block_bytes) {
  if (block_bytes == 0 || block_bytes % 4096 != 0)
    throw Error("cache block size must be a positive multiple of 4096 bytes");
  const std::uint64_t per_slot = kHeaderBytes + std::uint64_t{block_bytes};
  std::uint64_t slots = file_bytes / per_slot;
  for (; slots > 0; --slots) {
    const std::uint64_t bitmap = round_up((slots + 7) / 8, 4096);
    if (kHeaderBytes + bitmap + slots * per_slot <= file_bytes) break;
  }
  if (slots == 0) throw Error("the cache size is too small for one cache block and its metadata");
  slots = std::min<std::uint64_t>(slots, 0x7fffffffU);
  Geometry g;
  g.block_bytes = block_bytes;
  g.slots = static_cast<std::uint32_t>(slots);
  g.bitmap_bytes = round_up((slots + 7) / 8, 4096);
  g.data_start = kHeaderBytes + g.bitmap_bytes;
  return g;
}

void encode_superblock(const Superblock& sb, std::span<std::byte, kHeaderBytes> out) {
  RawSuper r{};
  r.magic = kSuperMagic;
  r.version = kFormatVersion;
  r.block_bytes = sb.geometry.block_bytes;
  r.slots = sb.geometry.slots;
  r.bitmap_bytes = sb.geometry.bitmap_bytes;
  r.data_start = sb.geometry.data_start;
  r.next_generation = sb.next_generation;
  r.clean = sb.clean ? 1 : 0;
  r.bitmap_crc = sb.bitmap_crc;
  seal(r, out);
}

std::optional<Superblock> decode_superblock(std::span<const std::byte, kHeaderBytes> in) {
  RawSuper r;
  std::memcpy(&r, in.data(), sizeof r);
  if (r.magic != kSuperMagic || r.version != kFormatVersion || r.header_crc != block_crc(in))
    return std::nullopt;
  Superblock sb;
  sb.geometry = {r.block_bytes, r.slots, r.bitmap_bytes, r.data_start};
  sb.clean = r.clean == 1;
  sb.next_generation = r.next_generation;
  sb.bitmap_crc = r.bitmap_crc;
  return sb;
}

void encode_entry(const EntryHeader& h, std::span<std::byte, kHeaderBytes> out) {
  RawEntry r{};
  r.magic = kEntryMagic;
  r.version = kFormatVersion;
  r.device = h.key.device.kernel();
  r.slot = h.slot.value();
  r.sector = h.key.sector.value();
  r.generation = h.generation;
  r.length = h.length;
  r.data_crc = h.data_crc;
  std::memcpy(r.vm, h.vm.data(), std::min(h.vm.size(), kVmNameBytes - 1));
  seal(r, out);
}

std::optional<EntryHeader> decode_entry(std::span<const std::byte, kHeaderBytes> in,
                                        std::uint32_t block_bytes) {
  RawEntry r;
  std::memcpy(&r, in.data(), sizeof r);
  if (r.magic != kEntryMagic || r.version != kFormatVersion || r.header_crc != block_crc(in))
    return std::nullopt;
  if (r.length == 0 || r.length > block_bytes || r.vm[kVmNameBytes - 1] != '\0')
    return std::nullopt;
  EntryHeader h;
  h.key = {DeviceId::from_kernel(r.device), PhysicalSector(r.sector)};
  h.slot = CacheSlot(r.slot);
  h.length = r.length;
  h.generation = r.generation;
  h.data_crc = r.data_crc;
  h.vm = std::string(r.vm, ::strnlen(r.vm, kVmNameBytes));
  return h;
}

}  // namespace v2p::cache
