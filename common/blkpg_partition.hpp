// Partition 1 of a whole-disk device, made with BLKPG: kernels without partition-table parsers
// (like the project's) still take it, and without udev nobody makes the node, so this makes its
// own. What the partition tests and the partition load of the event-rate bench stand on. The
// destructor deletes the partition and the node again.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace v2p {

class BlkpgPartition {
 public:
  // disk: the whole-disk node (e.g. /dev/loop3); the partition spans [start, start + length)
  // bytes of it; its node is made in node_dir. A partition 1 the kernel already made (from a
  // label) is used as it is. Throws v2p::Error.
  BlkpgPartition(const std::string& disk, std::uint64_t start_bytes, std::uint64_t length_bytes,
                 const std::filesystem::path& node_dir);
  ~BlkpgPartition();
  BlkpgPartition(const BlkpgPartition&) = delete;
  BlkpgPartition& operator=(const BlkpgPartition&) = delete;

  [[nodiscard]] const std::filesystem::path& node() const noexcept { return node_; }

 private:
  void blkpg(int op) const;

  std::string disk_;
  std::uint64_t start_;
  std::uint64_t length_;
  bool added_ = false;
  std::filesystem::path node_;
};

}  // namespace v2p
