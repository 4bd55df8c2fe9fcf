// Importing blkparse text output as PhysEvents, so traces taken with blktrace on machines where
// eBPF is not an option can feed the correlator and the tests.
#pragma once

#include <cstddef>
#include <istream>
#include <vector>

#include "pfilter/events.hpp"
#include "v2p/records.hpp"

namespace v2p::pfilter {

struct BlkparseImport {
  std::vector<PhysEvent> events;
  std::size_t lines = 0;    // lines read
  std::size_t ignored = 0;  // lines that are not Q/A/C events (other actions, summaries)
};

// Reads blkparse's default format: "maj,min cpu seq secs.nsecs pid action rwbs sector + sectors
// [comm]". Q becomes a queue event, A (remap, "… <- (maj,min) sector") a remap event, C a
// completion (latency from the matching Q on the same device and sector, error from "[err]").
// Timestamps are relative to the trace start, as blkparse prints them.
BlkparseImport import_blkparse(std::istream& in, const ReqFlagBits& bits = {});

}  // namespace v2p::pfilter
