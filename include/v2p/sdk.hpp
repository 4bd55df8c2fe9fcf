// The SDK's identity: which ABI a policy was built against, checked when it is loaded.
#pragma once

#include <cstdint>

#include "v2p/export.hpp"

namespace v2p {

// Bumped whenever a public struct's layout or a virtual interface changes.
inline constexpr std::uint32_t kSdkAbiVersion = 2;
inline constexpr const char* kSdkVersionString = "0.1.0";

struct SdkVersion {
  std::uint32_t abi;
  const char* version;
};

// The version of the libv2p a program is running against (may differ from the headers').
V2P_API SdkVersion sdk_version() noexcept;

}  // namespace v2p
