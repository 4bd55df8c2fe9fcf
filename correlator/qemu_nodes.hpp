// What a running QEMU says about its block nodes, read from its memory (/proc/PID/mem) instead
// of from a build's debug info: a node's driver (BlockDriverState->drv->format_name) and the
// file it opens (BlockDriverState->filename). Where those fields sit is discovered at run time
// (docs/attach.md, "What is assumed"): drv is the first pointer among the struct's first words
// whose target starts with a pointer to a known driver name; filename is the first string in the
// struct that names a file the process has open.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "correlator/uprobe_join.hpp"

namespace v2p::correlator {

class QemuNodeReader {
 public:
  // Throws v2p::Error when /proc/PID/mem cannot be opened (no process, no ptrace access).
  explicit QemuNodeReader(pid_t pid);
  ~QemuNodeReader();
  QemuNodeReader(const QemuNodeReader&) = delete;
  QemuNodeReader& operator=(const QemuNodeReader&) = delete;

  // The node at `bs`, or nullopt when its fields cannot be found (yet).
  std::optional<NodeInfo> node(std::uint64_t bs);
  // The absolute path fd refers to.
  std::optional<std::string> fd_path(std::uint64_t fd);
  // Where the fields were found (for the docs and for the attach summary).
  [[nodiscard]] std::optional<std::size_t> drv_offset() const noexcept { return drv_off_; }
  [[nodiscard]] std::optional<std::size_t> filename_offset() const noexcept { return name_off_; }

 private:
  bool read(std::uint64_t addr, void* out, std::size_t n) const;
  std::optional<std::string> format_at(std::uint64_t drv) const;
  std::string absolute(const std::string& name) const;
  std::set<std::string> open_files() const;

  pid_t pid_;
  int mem_ = -1;
  std::optional<std::size_t> drv_off_;
  std::optional<std::size_t> name_off_;
  std::map<std::uint64_t, std::string> fds_;
};

// Whether a QEMU driver does the file I/O itself (a protocol leaf: file, host_device ...).
bool is_protocol_driver(const std::string& format);

}  // namespace v2p::correlator
