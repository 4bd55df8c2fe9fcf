#include "common/stop_signal.hpp"

#include <signal.h>

#include <array>

namespace v2p {
namespace {

std::atomic<int> g_stop_signal{0};
constexpr std::array<int, 3> kSignals{SIGINT, SIGTERM, SIGHUP};
std::array<struct sigaction, kSignals.size()> g_previous{};

extern "C" void on_stop_signal(int sig) {
  g_stop_signal.store(sig, std::memory_order_relaxed);
}

}  // namespace

StopSignal::StopSignal() {
  g_stop_signal.store(0);
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: blocking calls return EINTR and the loop notices
  for (std::size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &sa, &g_previous[i]);
}

StopSignal::~StopSignal() {
  for (std::size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &g_previous[i], nullptr);
}

bool StopSignal::requested() const noexcept {
  return g_stop_signal.load(std::memory_order_relaxed) != 0;
}
int StopSignal::signal() const noexcept {
  return g_stop_signal.load(std::memory_order_relaxed);
}

}  // namespace v2p
