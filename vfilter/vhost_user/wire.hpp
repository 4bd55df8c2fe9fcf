// The vhost-user protocol's messages (QEMU docs/interop/vhost-user.rst) as this export uses
// them, and the virtio feature bits it offers. Pure definitions: the device parses payloads
// with the bounds checks in device.cpp, the test driver builds them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace v2p::vfilter::vhost_user {

enum Request : std::uint32_t {
  kGetFeatures = 1,
  kSetFeatures = 2,
  kSetOwner = 3,
  kResetOwner = 4,
  kSetMemTable = 5,
  kSetLogBase = 6,
  kSetLogFd = 7,
  kSetVringNum = 8,
  kSetVringAddr = 9,
  kSetVringBase = 10,
  kGetVringBase = 11,
  kSetVringKick = 12,
  kSetVringCall = 13,
  kSetVringErr = 14,
  kGetProtocolFeatures = 15,
  kSetProtocolFeatures = 16,
  kGetQueueNum = 17,
  kSetVringEnable = 18,
  kGetConfig = 24,
  kSetConfig = 25,
};

inline constexpr std::uint32_t kVersion = 0x1;
inline constexpr std::uint32_t kVersionMask = 0x3;
inline constexpr std::uint32_t kFlagReply = 1U << 2;
inline constexpr std::uint32_t kFlagNeedReply = 1U << 3;

inline constexpr std::size_t kHeaderSize = 12;  // request, flags, size (u32 each)
// Larger than any payload we accept (a memory table of 8 regions is 264 bytes, a config 268).
inline constexpr std::size_t kMaxPayload = 4096;
inline constexpr std::size_t kMaxRegions = 8;  // VHOST_MEMORY_BASELINE_NREGIONS
inline constexpr std::size_t kMaxFds = 8;
inline constexpr std::uint64_t kVringIndexMask = 0xff;
inline constexpr std::uint64_t kVringNoFd = 1ULL << 8;  // SET_VRING_KICK/CALL without a fd

struct MemRegion {
  std::uint64_t guest_phys_addr;
  std::uint64_t memory_size;
  std::uint64_t userspace_addr;
  std::uint64_t mmap_offset;
};
static_assert(sizeof(MemRegion) == 32);

struct VringState {
  std::uint32_t index;
  std::uint32_t num;
};

struct VringAddr {
  std::uint32_t index;
  std::uint32_t flags;
  std::uint64_t desc_user_addr;
  std::uint64_t used_user_addr;
  std::uint64_t avail_user_addr;
  std::uint64_t log_guest_addr;
};
static_assert(sizeof(VringAddr) == 40);

struct ConfigHeader {
  std::uint32_t offset;
  std::uint32_t size;
  std::uint32_t flags;
};

// Feature bits.
inline constexpr std::uint64_t kFVersion1 = 1ULL << 32;
inline constexpr std::uint64_t kFProtocolFeatures = 1ULL << 30;
inline constexpr std::uint64_t kProtoMq = 1ULL << 0;
inline constexpr std::uint64_t kProtoReplyAck = 1ULL << 3;
inline constexpr std::uint64_t kProtoConfig = 1ULL << 9;

}  // namespace v2p::vfilter::vhost_user
