// The skip mechanism itself: a missing package skips on a developer's machine and fails under
// CI=true; what the machine lacks skips either way. Runs skip_probe as a separate process,
// since a test cannot observe its own failure.
#include "common/test_skip.hpp"

#include <gtest/gtest.h>

#include <string>

#include "common/subprocess.hpp"

namespace v2p {
namespace {

CommandResult run_probe(const std::string& ci, const std::string& filter) {
  return run_command({"env", "CI=" + ci, V2P_SKIP_PROBE, "--gtest_filter=SkipProbe." + filter});
}

bool contains(const std::string& s, const std::string& what) {
  return s.find(what) != std::string::npos;
}

TEST(TestSkip, MissingToolSkipsOutsideCi) {
  const auto r = run_probe("", "MissingTool");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(contains(r.out, "[  SKIPPED ] SkipProbe.MissingTool")) << r.out;
  EXPECT_TRUE(contains(r.out, "needs v2p-no-such-tool (not installed)")) << r.out;
  EXPECT_FALSE(contains(r.out, "needs sh")) << "a tool that is present was named: " << r.out;
}

TEST(TestSkip, MissingToolFailsUnderCi) {
  const auto r = run_probe("true", "MissingTool");
  EXPECT_NE(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(contains(r.out, "[  FAILED  ] SkipProbe.MissingTool")) << r.out;
  EXPECT_TRUE(contains(r.out, "needs v2p-no-such-tool (not installed)")) << r.out;
  EXPECT_TRUE(contains(r.out, "scripts/setup.sh installs it")) << r.out;
}

TEST(TestSkip, MissingPackageFailsUnderCiOnly) {
  EXPECT_EQ(run_probe("", "MissingPackage").exit_code, 0);
  EXPECT_EQ(run_probe("false", "MissingPackage").exit_code, 0) << "only CI=true is CI";
  const auto r = run_probe("true", "MissingPackage");
  EXPECT_NE(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(contains(r.out, "v2p-no-such-package not installed")) << r.out;
}

TEST(TestSkip, WhatTheMachineLacksSkipsEvenUnderCi) {
  for (const std::string ci : {"", "true"}) {
    const auto r = run_probe(ci, "MachineLacks");
    EXPECT_EQ(r.exit_code, 0) << "CI=" << ci << "\n" << r.out << r.err;
    EXPECT_TRUE(contains(r.out, "[  SKIPPED ] SkipProbe.MachineLacks")) << r.out;
    EXPECT_TRUE(contains(r.out, "the machine lacks v2p-no-such-feature")) << r.out;
  }
}

// The same rules for tests written in bash (tests/common/test_skip.sh, exit 77 = skipped).
CommandResult run_shell_probe(const std::string& ci, const std::string& line) {
  return run_command(
      {"env", "CI=" + ci, "bash", "-c", ". \"$0\"; " + line + "; echo ran", V2P_SKIP_SH});
}

TEST(TestSkip, ShellHelperFollowsTheSameRules) {
  auto r = run_shell_probe("", "require_tools sh v2p-no-such-tool");
  EXPECT_EQ(r.exit_code, 77) << r.out << r.err;
  EXPECT_EQ(r.out, "skipped: needs v2p-no-such-tool (not installed)\n");
  r = run_shell_probe("true", "require_tools sh v2p-no-such-tool");
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(contains(r.out, "scripts/setup.sh installs it")) << r.out;
  r = run_shell_probe("true", "skip_machine needs root");
  EXPECT_EQ(r.exit_code, 77) << r.out << r.err;
  EXPECT_EQ(r.out, "skipped: needs root\n");
  r = run_shell_probe("true", "require_tools sh");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "ran\n");
}

TEST(TestSkip, PresentToolsRunTheTest) {
  const auto r = run_probe("true", "ToolPresent");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(contains(r.out, "[       OK ] SkipProbe.ToolPresent")) << r.out;
}

}  // namespace
}  // namespace v2p
