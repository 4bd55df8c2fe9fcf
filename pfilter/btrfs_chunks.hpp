// btrfs FIEMAP reports logical addresses in the file system's own address space; the chunk tree
// (tree id 3) says where each logical range lives on which device. This turns one into the other.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <vector>

#include "v2p/types.hpp"

namespace v2p::pfilter {

struct BtrfsStripe {
  std::uint64_t devid = 0;
  std::uint64_t offset = 0;  // bytes on the device
};

struct BtrfsChunk {
  std::uint64_t logical = 0;  // first byte in the logical address space
  std::uint64_t length = 0;
  std::uint64_t stripe_len = 0;
  std::uint64_t type = 0;  // BTRFS_BLOCK_GROUP_* flags
  std::uint16_t sub_stripes = 0;
  std::vector<BtrfsStripe> stripes;
};

struct BtrfsLocation {
  DeviceId device;
  std::uint64_t physical = 0;  // bytes on device
  std::uint64_t length = 0;    // contiguous bytes from here before the next stripe or chunk
};

class BtrfsChunkMap {
 public:
  BtrfsChunkMap(std::vector<BtrfsChunk> chunks, std::map<std::uint64_t, DeviceId> devices);
  // Reads the chunk tree and the device list of the btrfs holding `path` (needs root: it uses
  // BTRFS_IOC_TREE_SEARCH). Throws v2p::Error when that fails.
  static BtrfsChunkMap load(const std::filesystem::path& path);

  // The first copy of `logical` (single, DUP, RAID1*, RAID0, RAID10). Throws v2p::Error for an
  // unmapped address or a RAID5/6 chunk.
  [[nodiscard]] BtrfsLocation map(std::uint64_t logical) const;

 private:
  std::map<std::uint64_t, BtrfsChunk> chunks_;  // by logical start
  std::map<std::uint64_t, DeviceId> devices_;   // by devid
};

}  // namespace v2p::pfilter
