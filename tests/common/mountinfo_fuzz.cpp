// libFuzzer: any bytes handed to the mountinfo parser end in entries (or none), never a crash or
// an over-read; every entry it returns is one a later lookup can use.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/host_layout/mountinfo.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto mounts = v2p::host_layout::parse_mountinfo(text);
  for (const auto& m : mounts) {
    if (m.fs_type.empty() || m.source.empty()) __builtin_trap();  // a field the parser skipped
  }
  (void)v2p::host_layout::mount_holding(mounts, "/var/lib/images/vm1.raw");
  return 0;
}
