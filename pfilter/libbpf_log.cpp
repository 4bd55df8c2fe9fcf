#include "pfilter/libbpf_log.hpp"

#include <bpf/libbpf.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>

namespace v2p::pfilter {
namespace {

std::mutex g_mutex;
std::string g_last;

int print(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[512];
  const int n = std::vsnprintf(line, sizeof line, format, args);
  std::string s(line, n > 0 ? std::min<std::size_t>(n, sizeof line - 1) : 0);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (!s.empty()) g_last = s;
  return 0;
}

}  // namespace

LibbpfLogCapture::LibbpfLogCapture() : lock_(g_mutex) {
  g_last.clear();
  libbpf_set_print(print);
}

const std::string& LibbpfLogCapture::last() const noexcept {
  return g_last;
}

}  // namespace v2p::pfilter
