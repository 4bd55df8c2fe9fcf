// The one way a v2p test skips. Two kinds of reason, treated differently:
//  - a missing tool or package (qemu-io, nbdsh, fio's nbd engine): scripts/setup.sh installs
//    all of them, so under CI=true this is a failure, and a forgotten install step cannot hide
//    behind a skip;
//  - something the machine itself lacks (root, BTF, a kernel feature): always a skip.
// Every skip carries a one-line reason; scripts/run-tests.sh lists them at the end of a run.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>

#include "common/subprocess.hpp"

namespace v2p::test {

// CI=true (what GitHub, GitLab and .ci/run set) means every package is expected installed.
inline bool ci_requires_every_package() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string_view(ci) == "true";
}

// "needs qemu-io, mkfs.xfs (not installed)" for the tools not in PATH; empty when all are.
inline std::string missing_tools(std::initializer_list<std::string> tools) {
  std::string missing;
  for (const auto& t : tools) {
    if (!have_tool(t)) missing += (missing.empty() ? "" : ", ") + t;
  }
  return missing.empty() ? missing : "needs " + missing + " (not installed)";
}

inline std::string ci_failure(const std::string& why) {
  return why + " -- a failure, not a skip, under CI=true: scripts/setup.sh installs it";
}

}  // namespace v2p::test

// A missing package: skip, or fail under CI=true. Usable in TEST bodies and SetUp (returns).
#define V2P_SKIP_MISSING_PACKAGE(why)                         \
  do {                                                        \
    const std::string v2p_skip_why_ = (why);                  \
    if (::v2p::test::ci_requires_every_package())             \
      GTEST_FAIL() << ::v2p::test::ci_failure(v2p_skip_why_); \
    GTEST_SKIP() << v2p_skip_why_;                            \
  } while (0)

// Skips (or fails under CI=true) unless every tool named is in PATH.
#define V2P_REQUIRE_TOOLS(...)                                               \
  do {                                                                       \
    if (const auto v2p_missing_ = ::v2p::test::missing_tools({__VA_ARGS__}); \
        !v2p_missing_.empty())                                               \
      V2P_SKIP_MISSING_PACKAGE(v2p_missing_);                                \
  } while (0)

// What the machine lacks: a skip everywhere, CI included.
#define V2P_SKIP_MACHINE(why) GTEST_SKIP() << (why)

#define V2P_REQUIRE_ROOT(what)                                                          \
  do {                                                                                  \
    if (::geteuid() != 0) V2P_SKIP_MACHINE(std::string("needs root (") + (what) + ")"); \
  } while (0)

#define V2P_REQUIRE_BTF()                                                    \
  do {                                                                       \
    if (!std::filesystem::exists("/sys/kernel/btf/vmlinux"))                 \
      V2P_SKIP_MACHINE("needs a kernel with BTF (/sys/kernel/btf/vmlinux)"); \
  } while (0)
