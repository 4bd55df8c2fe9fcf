// Strong types for the address spaces v2p translates between. A virtual offset (bytes in a
// vdisk), a physical sector (512-byte units on a block device) and a device number never convert
// into each other silently: the correlator's correctness depends on keeping them apart.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>

namespace v2p {

template <class Tag, class Rep>
class Strong {
 public:
  using rep = Rep;
  constexpr Strong() = default;
  constexpr explicit Strong(Rep v) noexcept : value_(v) {}
  [[nodiscard]] constexpr Rep value() const noexcept { return value_; }
  constexpr auto operator<=>(const Strong&) const = default;

 private:
  Rep value_{};
};

// Byte offset inside a virtual disk, as the guest sees it.
using VirtualOffset = Strong<struct VirtualOffsetTag, std::uint64_t>;
// 512-byte sector on a physical (host) block device.
using PhysicalSector = Strong<struct PhysicalSectorTag, std::uint64_t>;

inline constexpr std::uint64_t kSectorSize = 512;

// A block device number in the kernel's internal encoding (major << 20 | minor), which is what
// the block tracepoints report; user space dev_t uses another encoding, hence the helpers.
class DeviceId {
 public:
  constexpr DeviceId() = default;
  static constexpr DeviceId from_kernel(std::uint32_t kdev) noexcept { return DeviceId(kdev); }
  static constexpr DeviceId from_major_minor(std::uint32_t major, std::uint32_t minor) noexcept {
    return DeviceId((major << 20) | (minor & 0xfffffU));
  }
  [[nodiscard]] constexpr std::uint32_t kernel() const noexcept { return kdev_; }
  [[nodiscard]] constexpr std::uint32_t major() const noexcept { return kdev_ >> 20; }
  [[nodiscard]] constexpr std::uint32_t minor() const noexcept { return kdev_ & 0xfffffU; }
  constexpr auto operator<=>(const DeviceId&) const = default;

 private:
  constexpr explicit DeviceId(std::uint32_t kdev) noexcept : kdev_(kdev) {}
  std::uint32_t kdev_ = 0;
};

using VmId = Strong<struct VmIdTag, std::uint32_t>;
using VdiskId = Strong<struct VdiskIdTag, std::uint32_t>;

// A vdisk is named by the VM it belongs to and its own id within the host.
struct VdiskKey {
  VmId vm;
  VdiskId vdisk;
  constexpr auto operator<=>(const VdiskKey&) const = default;
};

enum class IoOp : std::uint8_t {
  kRead = 0,
  kWrite = 1,
  kFlush = 2,
  kDiscard = 3,
  kWriteZeroes = 4,
  kOther = 5,
};

const char* to_string(IoOp op) noexcept;

}  // namespace v2p

template <class Tag, class Rep>
struct std::hash<v2p::Strong<Tag, Rep>> {
  std::size_t operator()(const v2p::Strong<Tag, Rep>& s) const noexcept {
    return std::hash<Rep>{}(s.value());
  }
};

template <>
struct std::hash<v2p::DeviceId> {
  std::size_t operator()(const v2p::DeviceId& d) const noexcept {
    return std::hash<std::uint32_t>{}(d.kernel());
  }
};

template <>
struct std::hash<v2p::VdiskKey> {
  std::size_t operator()(const v2p::VdiskKey& k) const noexcept {
    return (std::size_t{k.vm.value()} << 32) ^ k.vdisk.value();
  }
};
