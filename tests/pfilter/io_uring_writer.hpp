// The test's stand-in for the vfilter's data path: O_DIRECT I/O through io_uring with the slot
// id in the SQE's ioprio hint bits, one block at a time so each bio is easy to find.
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

namespace v2p::test {

struct TaggedBlock {
  std::uint64_t offset = 0;  // bytes, block aligned
  std::uint16_t slot = 0;
  std::uint16_t ioprio = 0;  // what goes into the SQE
};

// A block tagged as the vfilter tags it: tag::ioprio_for_slot(slot).
TaggedBlock tagged_block(std::uint64_t offset, std::uint16_t slot);

// Writes `block_size` bytes at each offset of `file` (created if absent) with O_DIRECT through
// io_uring, putting each block's ioprio into its SQE; fsyncs at the end. Throws
// v2p::Error on failure.
void write_tagged(const std::filesystem::path& file, const std::vector<TaggedBlock>& blocks,
                  std::uint32_t block_size = 4096, bool read_instead = false);

}  // namespace v2p::test
