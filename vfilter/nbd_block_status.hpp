// base:allocation for NBD_CMD_BLOCK_STATUS: where an image file has holes, from
// lseek(SEEK_DATA / SEEK_HOLE). A hole reads as zeros, so it is reported HOLE|ZERO; everything
// else is data (flags 0), which the protocol allows whenever the server does not know better.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "vfilter/nbd_structured_reply.hpp"

namespace v2p::vfilter {

// Extents covering [offset, offset + length) clamped to `size`, at most `max_extents` (at
// least one: a status reply always makes progress). `fd` < 0, or a file that cannot seek by
// data (a block device, an old file system), gives one data extent for the whole range.
std::vector<Extent> allocation_extents(int fd, std::uint64_t offset, std::uint64_t length,
                                       std::uint64_t size, std::size_t max_extents);

}  // namespace v2p::vfilter
