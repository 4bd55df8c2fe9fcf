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

// GoogleTest's line for a skipped test, built so that no source line (printed with a failed
// EXPECT) holds it whole.
const std::string kSkippedLine = std::string("[  SKIPPED") + " ] SkipProbe.";

// The probe's output for a failure message, with GoogleTest's skip marker defanged: CTest marks
// any test whose output matches "[  SKIPPED ]" as skipped, even a failed one.
std::string shown(const CommandResult& r) {
  std::string s = r.out + r.err;
  for (std::size_t at; (at = s.find(kSkippedLine.substr(0, 12))) != std::string::npos;) {
    s[at + 1] = '_';
  }
  return s;
}

TEST(TestSkip, MissingToolSkipsOutsideCi) {
  const auto r = run_probe("", "MissingTool");
  EXPECT_EQ(r.exit_code, 0) << shown(r);
  EXPECT_TRUE(contains(r.out, kSkippedLine + "MissingTool")) << shown(r);
  EXPECT_TRUE(contains(r.out, "needs v2p-no-such-tool (not installed)")) << shown(r);
  EXPECT_FALSE(contains(r.out, "needs sh")) << "a tool that is present was named: " << shown(r);
}

TEST(TestSkip, MissingToolFailsUnderCi) {
  const auto r = run_probe("true", "MissingTool");
  EXPECT_NE(r.exit_code, 0) << shown(r);
  EXPECT_TRUE(contains(r.out, "[  FAILED  ] SkipProbe.MissingTool")) << shown(r);
  EXPECT_TRUE(contains(r.out, "needs v2p-no-such-tool (not installed)")) << shown(r);
  EXPECT_TRUE(contains(r.out, "scripts/setup.sh installs it")) << shown(r);
}

TEST(TestSkip, MissingPackageFailsUnderCiOnly) {
  EXPECT_EQ(run_probe("", "MissingPackage").exit_code, 0);
  EXPECT_EQ(run_probe("false", "MissingPackage").exit_code, 0) << "only CI=true is CI";
  const auto r = run_probe("true", "MissingPackage");
  EXPECT_NE(r.exit_code, 0) << shown(r);
  EXPECT_TRUE(contains(r.out, "v2p-no-such-package not installed")) << shown(r);
}

TEST(TestSkip, WhatTheMachineLacksSkipsEvenUnderCi) {
  for (const std::string ci : {"", "true"}) {
    const auto r = run_probe(ci, "MachineLacks");
    EXPECT_EQ(r.exit_code, 0) << "CI=" << ci << "\n" << shown(r);
    EXPECT_TRUE(contains(r.out, kSkippedLine + "MachineLacks")) << shown(r);
    EXPECT_TRUE(contains(r.out, "the machine lacks v2p-no-such-feature")) << shown(r);
  }
}

// The same rules for tests written in bash (tests/common/test_skip.sh, exit 77 = skipped).
CommandResult run_shell_probe(const std::string& ci, const std::string& line) {
  return run_command(
      {"env", "CI=" + ci, "bash", "-c", ". \"$0\"; " + line + "; echo ran", V2P_SKIP_SH});
}

TEST(TestSkip, ShellHelperFollowsTheSameRules) {
  auto r = run_shell_probe("", "require_tools sh v2p-no-such-tool");
  EXPECT_EQ(r.exit_code, 77) << shown(r);
  EXPECT_EQ(r.out, "skipped: needs v2p-no-such-tool (not installed)\n");
  r = run_shell_probe("true", "require_tools sh v2p-no-such-tool");
  EXPECT_EQ(r.exit_code, 1) << shown(r);
  EXPECT_TRUE(contains(r.out, "scripts/setup.sh installs it")) << shown(r);
  r = run_shell_probe("true", "skip_machine needs root");
  EXPECT_EQ(r.exit_code, 77) << shown(r);
  EXPECT_EQ(r.out, "skipped: needs root\n");
  r = run_shell_probe("true", "require_tools sh");
  EXPECT_EQ(r.exit_code, 0) << shown(r);
  EXPECT_EQ(r.out, "ran\n");
}

TEST(TestSkip, PresentToolsRunTheTest) {
  const auto r = run_probe("true", "ToolPresent");
  EXPECT_EQ(r.exit_code, 0) << shown(r);
  EXPECT_TRUE(contains(r.out, "[       OK ] SkipProbe.ToolPresent")) << shown(r);
}

}  // namespace
}  // namespace v2p
