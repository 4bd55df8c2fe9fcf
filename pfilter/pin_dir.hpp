// The directory in bpffs where a probe pins its programs and maps. Owning it means holding an
// exclusive lock, so a second probe gets a clear error instead of unpinning the first one's maps,
// and a directory left by a killed run (its lock died with it) is replaced cleanly.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace v2p::pfilter {

class PinDirectory {
 public:
  // Mounts bpffs at /sys/fs/bpf if absent, takes the lock, removes stale pins, creates `dir`.
  // Throws v2p::Error with the reason when any of that fails.
  explicit PinDirectory(std::filesystem::path dir);
  ~PinDirectory();  // unpins everything pinned through it and removes the directory
  PinDirectory(const PinDirectory&) = delete;
  PinDirectory& operator=(const PinDirectory&) = delete;

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return dir_; }
  // The path to pin `name` at; remembered so the destructor can unpin it.
  std::filesystem::path entry(const std::string& name);

 private:
  void release_lock() noexcept;

  std::filesystem::path dir_;
  std::filesystem::path lock_;
  int lock_fd_ = -1;
  std::vector<std::filesystem::path> entries_;
};

// Makes sure /sys/fs/bpf is a bpffs mount (mounting it if not); throws v2p::Error when it cannot.
void ensure_bpffs(const std::filesystem::path& dir);

}  // namespace v2p::pfilter
