// A throwaway file system on a file-backed loop device: what the demo and the root integration
// tests stand a vdisk image on. Everything it makes is undone by its destructor, in reverse.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "v2p/types.hpp"

namespace v2p {

class LoopFilesystem {
 public:
  struct Options {
    std::filesystem::path backing_file;  // created (sparse); removed again on destruction
    std::filesystem::path mountpoint;    // created if absent; removed again on destruction
    std::uint64_t size_bytes = 512ULL << 20;
    std::string fs_type = "ext4";  // ext4, xfs or btrfs
    bool direct_io = true;         // loop device bypasses the page cache of the file below
  };

  // Throws v2p::Error (and undoes what it did) when a step fails.
  explicit LoopFilesystem(Options options);
  ~LoopFilesystem();
  LoopFilesystem(const LoopFilesystem&) = delete;
  LoopFilesystem& operator=(const LoopFilesystem&) = delete;

  [[nodiscard]] const std::filesystem::path& mountpoint() const noexcept {
    return opts_.mountpoint;
  }
  [[nodiscard]] const std::string& loop_device() const noexcept { return loop_; }
  [[nodiscard]] DeviceId device() const noexcept { return device_; }
  [[nodiscard]] const std::string& fs_type() const noexcept { return opts_.fs_type; }

 private:
  void teardown() noexcept;

  Options opts_;
  std::string loop_;
  DeviceId device_;
  bool created_mountpoint_ = false;
  bool mounted_ = false;
};

// Detaches loop devices and unmounts file systems left behind by v2p processes that were killed
// before they could clean up: anything whose backing file lies under `dir_prefix`<pid>/ for a
// pid that no longer runs. Returns how many loop devices it detached.
int reap_stale_loop_filesystems(const std::string& dir_prefix);

}  // namespace v2p
