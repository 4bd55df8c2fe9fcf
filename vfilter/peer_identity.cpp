#include "vfilter/peer_identity.hpp"

#include <sys/socket.h>

#include <fmt/core.h>

#include <fstream>
#include <iterator>

namespace v2p::vfilter {

namespace {

// QEMU option values are comma-separated; ",," stands for a literal comma.
std::vector<std::string> split_qemu_opts(const std::string& s) {
  std::vector<std::string> parts(1);
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == ',') {
      if (i + 1 < s.size() && s[i + 1] == ',') {
        parts.back() += ',';
        ++i;
      } else {
        parts.emplace_back();
      }
    } else {
      parts.back() += s[i];
    }
  }
  return parts;
}

std::string name_from_name_option(const std::string& value) {
  const auto parts = split_qemu_opts(value);
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const auto& p = parts[i];
    if (p.rfind("guest=", 0) == 0) return p.substr(6);
    // The implied first key of -name is "guest".
    if (i == 0 && p.find('=') == std::string::npos) return p;
  }
  return {};
}

}  // namespace

std::string vm_name_from_cmdline(const std::vector<std::string>& argv) {
  std::string uuid;
  for (std::size_t i = 0; i + 1 < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "-name" || a == "--name") {
      if (auto n = name_from_name_option(argv[i + 1]); !n.empty()) return n;
    } else if ((a == "-uuid" || a == "--uuid") && uuid.empty()) {
      uuid = argv[i + 1];
    }
  }
  return uuid;
}

std::vector<std::string> read_cmdline(int pid) {
  std::ifstream in(fmt::format("/proc/{}/cmdline", pid), std::ios::binary);
  if (!in) return {};
  const std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> argv;
  std::string cur;
  for (char c : raw) {
    if (c == '\0') {
      argv.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) argv.push_back(cur);
  return argv;
}

std::string discover_peer_vm(int unix_fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(unix_fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.pid <= 0) {
    return "unknown";
  }
  if (auto name = vm_name_from_cmdline(read_cmdline(cred.pid)); !name.empty()) return name;
  return fmt::format("pid-{}", cred.pid);
}

}  // namespace v2p::vfilter
