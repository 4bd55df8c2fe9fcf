#include "agent/service_notify.hpp"

#include <systemd/sd-daemon.h>

namespace v2p::agent {

ServiceNotify::ServiceNotify() {
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0) watchdog_interval_ns_ = usec * 1000 / 2;
}

void ServiceNotify::ready(const std::string& status) {
  sd_notify(0, ("READY=1\nSTATUS=" + status).c_str());
}

void ServiceNotify::status(const std::string& status) {
  sd_notify(0, ("STATUS=" + status).c_str());
}

void ServiceNotify::stopping() {
  sd_notify(0, "STOPPING=1");
}

void ServiceNotify::watchdog(std::uint64_t now_ns) {
  if (watchdog_interval_ns_ == 0 || now_ns < next_watchdog_ns_) return;
  sd_notify(0, "WATCHDOG=1");
  next_watchdog_ns_ = now_ns + watchdog_interval_ns_;
}

}  // namespace v2p::agent
