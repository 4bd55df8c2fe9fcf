// Where each byte of each vdisk lives: vdisk byte ranges -> (container, block, offset in block).
// A later write splits or replaces the ranges it covers, so the newest container wins.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "ec/metadata_log_format.hpp"
#include "v2p/types.hpp"

namespace v2p::ec {

struct Piece {
  std::uint64_t voffset = 0;
  std::uint64_t length = 0;
  std::uint64_t container = 0;
  BlockRef block;          // the whole block, as written (its CRC covers all of it)
  std::uint32_t skip = 0;  // where this piece starts inside the block
};

class ExtentIndex {
 public:
  void insert(VdiskKey key, std::uint64_t container, const BlockRef& block);
  // Pieces overlapping [voffset, voffset + length), in order, clipped to the range; gaps are
  // simply absent.
  [[nodiscard]] std::vector<Piece> lookup(VdiskKey key, std::uint64_t voffset,
                                          std::uint64_t length) const;
  // Bytes of `key` currently mapped.
  [[nodiscard]] std::uint64_t live_bytes(VdiskKey key) const;
  [[nodiscard]] std::vector<VdiskKey> vdisks() const;

 private:
  struct Extent {
    std::uint64_t length;
    std::uint64_t container;
    BlockRef block;
    std::uint32_t skip;
  };
  std::map<VdiskKey, std::map<std::uint64_t, Extent>> maps_;
};

}  // namespace v2p::ec
