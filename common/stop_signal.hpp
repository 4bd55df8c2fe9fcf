// Ctrl-C and SIGTERM as a flag the main loop polls, so shutdown always runs the destructors that
// detach BPF programs, remove sockets and tear down loop devices.
#pragma once

#include <atomic>

namespace v2p {

class StopSignal {
 public:
  // Installs handlers for SIGINT, SIGTERM and SIGHUP; the previous handlers return on destruction.
  StopSignal();
  ~StopSignal();
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  [[nodiscard]] bool requested() const noexcept;
  // The signal that asked to stop, or 0.
  [[nodiscard]] int signal() const noexcept;
};

}  // namespace v2p
