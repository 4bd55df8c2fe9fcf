#include "common/loop_filesystem.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "common/error.hpp"
#include "common/subprocess.hpp"

namespace v2p {
namespace {

std::vector<std::string> mkfs_command(const std::string& fs_type, const std::string& dev) {
  if (fs_type == "ext4") return {"mkfs.ext4", "-q", "-F", dev};
  if (fs_type == "xfs") return {"mkfs.xfs", "-q", "-f", dev};
  if (fs_type == "btrfs") return {"mkfs.btrfs", "-q", "-f", dev};
  throw Error("unsupported file system type '" + fs_type + "' (use ext4, xfs or btrfs)");
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

void unmount(const std::filesystem::path& mp) noexcept {
  try {
    if (!run_command({"umount", mp.string()}).ok()) run_command({"umount", "-l", mp.string()});
  } catch (...) {
  }
}

}  // namespace

LoopFilesystem::LoopFilesystem(Options options) : opts_(std::move(options)) {
  try {
    {
      std::ofstream create(opts_.backing_file, std::ios::binary | std::ios::trunc);
      if (!create) throw Error("cannot create " + opts_.backing_file.string());
    }
    std::filesystem::resize_file(opts_.backing_file, opts_.size_bytes);
    std::vector<std::string> losetup{"losetup", "--find", "--show"};
    if (opts_.direct_io) losetup.emplace_back("--direct-io=on");
    losetup.push_back(opts_.backing_file.string());
    loop_ = trim(run_checked(losetup));
    struct stat st {};
    if (::stat(loop_.c_str(), &st) != 0) throw system_error("cannot stat " + loop_);
    device_ = DeviceId::from_major_minor(::major(st.st_rdev), ::minor(st.st_rdev));
    run_checked(mkfs_command(opts_.fs_type, loop_));
    created_mountpoint_ = std::filesystem::create_directories(opts_.mountpoint);
    run_checked({"mount", "-t", opts_.fs_type, loop_, opts_.mountpoint.string()});
    mounted_ = true;
  } catch (...) {
    teardown();
    throw;
  }
}

LoopFilesystem::~LoopFilesystem() {
  teardown();
}

void LoopFilesystem::teardown() noexcept {
  if (mounted_) unmount(opts_.mountpoint);
  mounted_ = false;
  if (!loop_.empty()) {
    try {
      run_command({"losetup", "-d", loop_});
    } catch (...) {
    }
    loop_.clear();
  }
  std::error_code ec;
  if (created_mountpoint_) std::filesystem::remove(opts_.mountpoint, ec);
  std::filesystem::remove(opts_.backing_file, ec);
}

int reap_stale_loop_filesystems(const std::string& dir_prefix) {
  // `losetup -n -O NAME,BACK-FILE --list` prints one "NAME BACKFILE" line per loop device.
  const auto listing = run_command({"losetup", "-n", "-O", "NAME,BACK-FILE", "--list"});
  if (!listing.ok()) return 0;
  int detached = 0;
  std::istringstream lines(listing.out);
  std::string dev, back;
  while (lines >> dev >> back) {
    if (back.rfind(dir_prefix, 0) != 0) continue;
    const auto rest = back.substr(dir_prefix.size());
    const pid_t pid = static_cast<pid_t>(std::atol(rest.c_str()));
    if (pid <= 0 || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    // The owner is gone: unmount whatever this device still backs, then detach it.
    std::ifstream mounts("/proc/self/mounts");
    std::string src, target, rest_of_line;
    while (mounts >> src >> target && std::getline(mounts, rest_of_line)) {
      if (src == dev) unmount(target);
    }
    if (run_command({"losetup", "-d", dev}).ok()) ++detached;
    std::error_code ec;
    std::filesystem::remove_all(std::filesystem::path(back).parent_path(), ec);
  }
  return detached;
}

}  // namespace v2p
