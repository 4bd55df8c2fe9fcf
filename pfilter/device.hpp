// What v2p knows about one block device, and its frame in the stream file
// (FrameType::kDeviceDeclaration, see docs/formats.md "Physical event frames").
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "v2p/types.hpp"

namespace v2p {
class StreamWriter;
}

namespace v2p::pfilter {

enum class DeviceKind : std::uint8_t {
  kDisk = 0,
  kPartition = 1,
  kLoop = 2,
  kDeviceMapper = 3,
  kOther = 4,
};

const char* to_string(DeviceKind kind) noexcept;

struct BlockDevice {
  DeviceId id;
  DeviceKind kind = DeviceKind::kOther;
  DeviceId parent;                 // partition: its disk; otherwise 0
  std::uint64_t start_sector = 0;  // partition: first sector on the parent
  std::uint64_t size_sectors = 0;
  std::uint64_t backing_offset = 0;  // loop: byte offset into the backing file
  std::string name;                  // "sda1", "loop3", "dm-0"
  std::string backing_file;          // loop: absolute path of the backing file
  std::string dm_table;              // device-mapper: `dmsetup table` lines

  bool operator==(const BlockDevice&) const = default;
};

// Payload layout: u32 dev, u32 parent, u8 kind, u8[3] zero, u64 start_sector, u64 size_sectors,
// u64 backing_offset, then name, backing_file, dm_table each as u32 length + bytes.
std::vector<std::byte> encode_device_declaration(const BlockDevice& d);
// Throws v2p::Error on a malformed payload.
BlockDevice decode_device_declaration(std::span<const std::byte> payload);
void write_device_declaration(StreamWriter& out, const BlockDevice& d);

}  // namespace v2p::pfilter
