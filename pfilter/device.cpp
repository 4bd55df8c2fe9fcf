#include "pfilter/device.hpp"

#include <cstring>

#include "common/error.hpp"
#include "common/record_file.hpp"

namespace v2p::pfilter {
namespace {

template <class T>
void put(std::vector<std::byte>& out, T v) {
  const auto* p = reinterpret_cast<const std::byte*>(&v);
  out.insert(out.end(), p, p + sizeof v);
}

void put_string(std::vector<std::byte>& out, const std::string& s) {
  put(out, static_cast<std::uint32_t>(s.size()));
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  out.insert(out.end(), p, p + s.size());
}

class Cursor {
 public:
  explicit Cursor(std::span<const std::byte> p) : p_(p) {}
  template <class T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, p_.data() + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }
  std::string string() {
    const auto n = get<std::uint32_t>();
    need(n);
    std::string s(reinterpret_cast<const char*>(p_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  [[nodiscard]] bool at_end() const { return pos_ == p_.size(); }

 private:
  void need(std::size_t n) const {
    if (p_.size() - pos_ < n) throw Error("device declaration frame is truncated");
  }
  std::span<const std::byte> p_;
  std::size_t pos_ = 0;
};

}  // namespace

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
  std::vector<std::byte> out;
  put(out, d.id.kernel());
  put(out, d.parent.kernel());
  put(out, static_cast<std::uint8_t>(d.kind));
  for (int i = 0; i < 3; ++i) put(out, std::uint8_t{0});
  put(out, d.start_sector);
  put(out, d.size_sectors);
  put(out, d.backing_offset);
  put_string(out, d.name);
  put_string(out, d.backing_file);
  put_string(out, d.dm_table);
  return out;
}

BlockDevice decode_device_declaration(std::span<const std::byte> payload) {
  Cursor c(payload);
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
  d.name = c.string();
  d.backing_file = c.string();
  d.dm_table = c.string();
  if (!c.at_end()) throw Error("device declaration frame has trailing bytes");
  return d;
}

void write_device_declaration(StreamWriter& out, const BlockDevice& d) {
  out.write(FrameType::kDeviceDeclaration, encode_device_declaration(d));
}

}  // namespace v2p::pfilter
