// The one parser of size strings ("65536", "64K", "512MiB", "8g"), for flags, config files and
// filter arguments alike, so every place that takes a size accepts the same spellings.
#pragma once

#include <cstdint>
#include <string_view>

namespace v2p::host_layout {

// Bytes for `text`: a decimal count, optionally followed by B, K/KB/KiB, M/MB/MiB, G/GB/GiB or
// T/TB/TiB (any case; all binary multiples). Throws v2p::Error with a sentence naming `text`
// (and `what`, e.g. the flag, when given) on anything else or on overflow.
std::uint64_t parse_size(std::string_view text, std::string_view what = {});

}  // namespace v2p::host_layout
