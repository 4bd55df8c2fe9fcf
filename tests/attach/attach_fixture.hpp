// What the passive-attach root tests share: a scratch directory on a real disk, a qcow2 image on
// a loop-mounted file system, a qemu-storage-daemon serving it over NBD, and the check that no
// uprobe of this process is left in the kernel.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "common/error.hpp"
#include "common/loop_filesystem.hpp"
#include "common/subprocess.hpp"
#include "tests/common/test_skip.hpp"

namespace v2p::test {

namespace fs = std::filesystem;

// Removed with everything in it; leftovers of killed runs are reaped first.
class AttachScratch {
 public:
  AttachScratch() {
    reap_stale_loop_filesystems("/var/tmp/v2p-attach-test-");
    path_ = "/var/tmp/v2p-attach-test-" + std::to_string(::getpid());
    fs::create_directories(path_);
  }
  ~AttachScratch() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  [[nodiscard]] const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Lines of `bpftool perf show` naming a uprobe of this process still in the kernel. Empty once
// everything is detached.
inline std::string own_perf_attachments() {
  const auto r = run_command({"bpftool", "-j", "perf", "show"});
  const std::string needle = "\"pid\":" + std::to_string(::getpid()) + ",";
  std::string out;
  for (std::size_t at = r.out.find(needle); at != std::string::npos;
       at = r.out.find(needle, at + 1)) {
    const auto end = r.out.find('}', at);
    const auto entry = r.out.substr(at, end == std::string::npos ? std::string::npos : end - at);
    if (entry.find("\"fd_type\":\"uprobe\"") != std::string::npos) out += entry + "\n";
  }
  return out;
}

inline bool wait_for_socket(const fs::path& p, ChildProcess& child) {
  for (int i = 0; i < 200; ++i) {
    std::error_code ec;
    if (fs::is_socket(p, ec)) return true;
    if (child.exited()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return false;
}

// qemu-storage-daemon exporting a qcow2 image over NBD on a unix socket, with O_DIRECT file
// I/O through its thread pool (the defaults but for cache.direct).
class QsdExport {
 public:
  QsdExport(const fs::path& image, const fs::path& socket, const std::string& aio = "threads")
      : socket_(socket),
        qsd_({"qemu-storage-daemon", "--blockdev",
              "driver=file,node-name=file0,filename=" + image.string() +
                  ",cache.direct=on,aio=" + aio,
              "--blockdev", "driver=qcow2,node-name=disk0,file=file0", "--nbd-server",
              "addr.type=unix,addr.path=" + socket.string(), "--export",
              "type=nbd,id=e0,node-name=disk0,name=disk0,writable=on"}) {
    if (!wait_for_socket(socket, qsd_))
      throw Error("qemu-storage-daemon did not start: " + [this] {
        std::string s;
        for (const auto& l : qsd_.read_lines()) s += l + " ";
        return s;
      }());
  }
  [[nodiscard]] pid_t pid() const { return qsd_.pid(); }
  [[nodiscard]] std::string uri() const { return "nbd+unix:///disk0?socket=" + socket_.string(); }
  ChildProcess& process() { return qsd_; }

 private:
  fs::path socket_;
  ChildProcess qsd_;
};

}  // namespace v2p::test
