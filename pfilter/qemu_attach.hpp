// Passive attach: the qemu_uprobe eBPF programs on one running QEMU (or qemu-storage-daemon)
// process, unmodified. One RAII object per process: destroying it detaches every uprobe and
// tracepoint, so nothing stays in the kernel; detach() is called by the owner when the process
// has exited (exited() tells), since a uprobe outlives the process it was attached to otherwise.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pfilter/qemu_uprobe.h"

namespace v2p::pfilter {

// The exported block-layer functions passive attach needs (QEMU >= 4.2 names).
const std::vector<std::string>& qemu_required_symbols();

struct QemuAttachOptions {
  std::uint32_t ring_bytes = 8u << 20;  // a power of two, at least one page
};

class QemuAttach {
 public:
  // Throws v2p::Error with one line an operator can act on: no such process, not root, ptrace
  // access denied, the executable lacks the needed exported symbols (named), load failure.
  static std::unique_ptr<QemuAttach> attach(pid_t pid, const QemuAttachOptions& options = {});
  ~QemuAttach();
  QemuAttach(const QemuAttach&) = delete;
  QemuAttach& operator=(const QemuAttach&) = delete;

  // Waits up to timeout_ms for events and delivers every available one; returns how many.
  std::size_t poll(int timeout_ms, const std::function<void(const v2p_qemu_event&)>& on_event);
  // Events the kernel dropped (ring buffer full), since attach.
  [[nodiscard]] std::uint64_t lost_events() const;
  [[nodiscard]] pid_t pid() const noexcept;
  [[nodiscard]] const std::filesystem::path& executable() const noexcept;
  // Whether the traced process has exited (its pidfd is readable).
  [[nodiscard]] bool exited() const;
  // Detaches everything now (idempotent); poll() then delivers nothing.
  void detach() noexcept;

  struct Impl;

 private:
  explicit QemuAttach(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace v2p::pfilter
