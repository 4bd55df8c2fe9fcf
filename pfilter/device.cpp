#include "pfilter/device.hpp"

#include <cstring>

#include "common/error.hpp"
#include "common/payload_codec.hpp"
#include "common/record_file.hpp"

namespace v2p::pfilter {

const char* to_string(DeviceKind kind) noexcept {
  switch (kind) {
    case DeviceKind::kDisk:
      return "disk";
    case DeviceKind::kPartition:
      return "partition";
    case DeviceKind::kLoop:
      return "loop";
    case DeviceKind::kDeviceMapper:
      return "dm";
    case DeviceKind::kOther:
      return "other";
  }
  return "other";
}

std::vector<std::byte> encode_device_declaration(const BlockDevice& d) {
  PayloadWriter out;
  out.put(d.id.kernel());
  out.put(d.parent.kernel());
  out.put(static_cast<std::uint8_t>(d.kind));
  for (int i = 0; i < 3; ++i) out.put(std::uint8_t{0});
  out.put(d.start_sector);
  out.put(d.size_sectors);
  out.put(d.backing_offset);
  out.put_string(d.name);
  out.put_string(d.backing_file);
  out.put_string(d.dm_table);
  return std::move(out).take();
}

BlockDevice decode_device_declaration(std::span<const std::byte> payload) {
  PayloadReader c(payload, "device declaration frame");
  BlockDevice d;
  d.id = DeviceId::from_kernel(c.get<std::uint32_t>());
  d.parent = DeviceId::from_kernel(c.get<std::uint32_t>());
  const auto kind = c.get<std::uint8_t>();
  if (kind > static_cast<std::uint8_t>(DeviceKind::kOther)) {
    throw Error("device declaration has unknown kind " + std::to_string(kind));
  }
  d.kind = static_cast<DeviceKind>(kind);
  for (int i = 0; i < 3; ++i) c.get<std::uint8_t>();
  d.start_sector = c.get<std::uint64_t>();
  d.size_sectors = c.get<std::uint64_t>();
  d.backing_offset = c.get<std::uint64_t>();
  d.name = c.get_string();
  d.backing_file = c.get_string();
  d.dm_table = c.get_string();
  c.expect_end();
  return d;
}

void write_device_declaration(StreamWriter& out, const BlockDevice& d) {
  out.write(FrameType::kDeviceDeclaration, encode_device_declaration(d));
}

}  // namespace v2p::pfilter
