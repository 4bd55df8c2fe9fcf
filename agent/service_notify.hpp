// systemd's notification protocol for `v2p agent` under Type=notify (sd_notify(3)): no-ops when
// the agent was not started by systemd (NOTIFY_SOCKET unset).
#pragma once

#include <cstdint>
#include <string>

namespace v2p::agent {

class ServiceNotify {
 public:
  ServiceNotify();
  void ready(const std::string& status);
  void status(const std::string& status);
  void stopping();
  // Sends WATCHDOG=1 when the unit has WatchdogSec= and half the interval has passed.
  void watchdog(std::uint64_t now_ns);

 private:
  std::uint64_t watchdog_interval_ns_ = 0;  // half of WATCHDOG_USEC, 0 = off
  std::uint64_t next_watchdog_ns_ = 0;
};

}  // namespace v2p::agent
