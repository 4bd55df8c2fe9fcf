// libbpf says why a load failed only through its print callback, and that callback is one per
// process: every loader (the block probe, the QEMU uprobes) captures it through this, one at a
// time, so two loads on two threads cannot swap each other's reasons.
#pragma once

#include <mutex>
#include <string>

namespace v2p::pfilter {

class LibbpfLogCapture {
 public:
  // Waits for any other capture, clears the last warning and installs the callback.
  LibbpfLogCapture();
  LibbpfLogCapture(const LibbpfLogCapture&) = delete;
  LibbpfLogCapture& operator=(const LibbpfLogCapture&) = delete;
  // libbpf's last warning since the capture began (debug lines are dropped); "" when none.
  [[nodiscard]] const std::string& last() const noexcept;

 private:
  std::lock_guard<std::mutex> lock_;
};

}  // namespace v2p::pfilter
