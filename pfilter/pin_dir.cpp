#include "pfilter/pin_dir.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <system_error>

#include "common/error.hpp"

namespace v2p::pfilter {
namespace {

constexpr long kBpfFsMagic = 0xcafe4a11;

bool on_bpffs(const std::filesystem::path& p) {
  struct statfs st {};
  return ::statfs(p.c_str(), &st) == 0 && st.f_type == kBpfFsMagic;
}

// One lock file per pin directory, outside bpffs (which only holds BPF objects).
std::filesystem::path lock_path(const std::filesystem::path& dir) {
  std::string name = dir.lexically_normal().string();
  for (char& c : name) {
    if (c == '/') c = '_';
  }
  const std::filesystem::path run = std::filesystem::exists("/run/lock") ? "/run/lock" : "/tmp";
  return run / ("v2p-pin" + name + ".lock");
}

// Opens and locks `path`; -1 when another process holds it. The holder unlinks the file when it
// is done, so a lock taken on a file that is no longer at `path` is stale: retry on the new one.
int acquire_lock(const std::filesystem::path& path) {
  for (int attempt = 0; attempt < 16; ++attempt) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) throw system_error("cannot create lock file " + path.string());
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      return -1;
    }
    struct stat held {};
    struct stat now {};
    if (::fstat(fd, &held) == 0 && ::stat(path.c_str(), &now) == 0 && held.st_ino == now.st_ino &&
        held.st_dev == now.st_dev) {
      return fd;
    }
    ::close(fd);
  }
  throw Error("cannot take the lock " + path.string() + " (it keeps being replaced)");
}

}  // namespace

void ensure_bpffs(const std::filesystem::path& dir) {
  const std::filesystem::path root = "/sys/fs/bpf";
  if (!on_bpffs(root)) {
    std::error_code ec;
    std::filesystem::create_directories(root, ec);
    if (::mount("bpf", root.c_str(), "bpf", 0, "mode=0700") != 0) {
      throw system_error(
          "bpffs is not mounted at /sys/fs/bpf and mounting it failed (try `mount -t "
          "bpf bpf /sys/fs/bpf`)");
    }
  }
  if (!on_bpffs(dir.parent_path())) {
    throw Error("cannot pin under " + dir.string() + ": " + dir.parent_path().string() +
                " is not on a bpffs mount (use a directory under /sys/fs/bpf)");
  }
}

PinDirectory::PinDirectory(std::filesystem::path dir) : dir_(std::move(dir)) {
  ensure_bpffs(dir_);
  lock_ = lock_path(dir_);
  lock_fd_ = acquire_lock(lock_);
  if (lock_fd_ < 0) {
    throw Error("another v2p probe is running with its pins in " + dir_.string() +
                "; stop it or give this one another pin directory");
  }
  // We hold the lock, so whatever is there was left by a run that died before cleaning up.
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  if (ec) {
    release_lock();
    throw Error("cannot remove stale pins in " + dir_.string() + ": " + ec.message());
  }
  std::filesystem::create_directories(dir_, ec);
  if (ec) {
    release_lock();
    throw Error("cannot create " + dir_.string() + ": " + ec.message());
  }
}

PinDirectory::~PinDirectory() {
  for (const auto& p : entries_) ::unlink(p.c_str());
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  release_lock();
}

void PinDirectory::release_lock() noexcept {
  // Unlinked while still held, so lock files do not pile up; acquire_lock() copes with that.
  ::unlink(lock_.c_str());
  ::close(lock_fd_);
  lock_fd_ = -1;
}

std::filesystem::path PinDirectory::entry(const std::string& name) {
  entries_.push_back(dir_ / name);
  return entries_.back();
}

}  // namespace v2p::pfilter
