// Feeding recorded v2p stream files (the vfilter's record file, the probe's event file, or one
// file holding both) into a correlator, merged in time order as they would have arrived live.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "correlator/correlator.hpp"

namespace v2p::correlator {

struct ReplayResult {
  std::uint64_t frames = 0;
  std::uint64_t skipped = 0;  // at or before `after_ns` (already in a snapshot)
};

// Replays the frames of `files` merged by time (records by completion, events by submission),
// advancing the correlator's clock as it goes, then drains it. Throws v2p::Error on an
// unreadable or malformed file.
//
// Resuming after a snapshot taken at after_ns: records that completed by then are skipped (the
// snapshot holds their effect); events are replayed from after_ns - event_lookback_ns, because a
// request completing later may own them. Re-fed events of skipped records find no request and
// count as unattributed; they never change the map.
ReplayResult replay_streams(Correlator& c, const std::vector<std::filesystem::path>& files,
                            std::uint64_t after_ns = 0,
                            std::uint64_t event_lookback_ns = kDefaultHorizonNs);

}  // namespace v2p::correlator
