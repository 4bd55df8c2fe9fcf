#include "common/subprocess.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "common/error.hpp"

namespace v2p {
namespace {

TEST(Subprocess, CapturesOutputAndExitCode) {
  const auto r = run_command({"sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
}

TEST(Subprocess, ArgumentsAreNotInterpretedByAShell) {
  const auto r = run_command({"echo", "a; rm -rf /nonexistent", "$HOME"});
  EXPECT_EQ(r.out, "a; rm -rf /nonexistent $HOME\n");
}

TEST(Subprocess, RunCheckedThrowsWithTheToolsMessage) {
  try {
    run_checked({"sh", "-c", "echo broken thing >&2; exit 1"});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("broken thing"), std::string::npos) << e.what();
  }
  EXPECT_THROW(run_checked({"/nonexistent/tool"}), Error);
}

TEST(Subprocess, ChildProcessLinesAndTermination) {
  ChildProcess child({"sh", "-c", "echo one; echo two; exec sleep 30"});
  std::vector<std::string> lines;
  while (lines.size() < 2) {
    for (auto& l : child.read_lines()) lines.push_back(l);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(lines, (std::vector<std::string>{"one", "two"}));
  EXPECT_FALSE(child.exited());
  child.terminate(SIGTERM);
  while (!child.exited()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(child.exit_code(), 128 + SIGTERM);
}

TEST(Subprocess, HaveTool) {
  EXPECT_TRUE(have_tool("sh"));
  EXPECT_FALSE(have_tool("v2p-no-such-tool"));
}

}  // namespace
}  // namespace v2p
