// Reading a recorded stream file back: the frames the pfilter writes, dispatched by type, so
// `v2p replay` and the tests above the filters need no privileges.
#pragma once

#include <cstddef>
#include <filesystem>
#include <functional>

#include "common/record_file.hpp"
#include "pfilter/device.hpp"
#include "v2p/records.hpp"

namespace v2p::pfilter {

struct ReplayHandlers {
  std::function<void(const PhysEvent&)> on_event;
  std::function<void(const BlockDevice&)> on_device;
  std::function<void(const LostEvents&)> on_lost;
  std::function<void(const Frame&)> on_other;  // vdisk declarations, context records, unknown
};

struct ReplayCounts {
  std::size_t events = 0;
  std::size_t devices = 0;
  std::size_t lost_frames = 0;
  std::size_t other = 0;
  std::uint64_t lost_total = 0;  // from the last LostEvents frame
};

// Reads `path` to the end, calling the handler for each frame (unset handlers skip). Throws
// v2p::Error on a file that is not a v2p stream or is malformed.
ReplayCounts replay_stream(const std::filesystem::path& path, const ReplayHandlers& handlers);

}  // namespace v2p::pfilter
