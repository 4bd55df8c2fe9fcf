// Running the host tools v2p builds on (losetup, mkfs, mount, qemu, fio) without a shell, so
// paths with spaces or quotes never turn into commands.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace v2p {

struct CommandResult {
  int exit_code = -1;  // 128 + signal when killed by a signal
  std::string out;
  std::string err;
  [[nodiscard]] bool ok() const noexcept { return exit_code == 0; }
};

// Runs argv[0] (looked up in PATH) to completion and captures its output.
CommandResult run_command(const std::vector<std::string>& argv);

// Like run_command, but throws v2p::Error with the tool's stderr when it fails.
std::string run_checked(const std::vector<std::string>& argv);

// True when `tool` is found in PATH.
bool have_tool(const std::string& tool);

// A child process whose stdout and stderr come back through one pipe, read line by line.
// The destructor kills (SIGKILL) and reaps a child that is still running.
class ChildProcess {
 public:
  explicit ChildProcess(const std::vector<std::string>& argv);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Complete lines printed since the last call (without waiting).
  std::vector<std::string> read_lines();
  // Non-blocking: true once the child has exited; exit_code() is then valid.
  bool exited();
  [[nodiscard]] int exit_code() const noexcept { return exit_code_; }
  void terminate(int signal);
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int exit_code_ = -1;
  std::string partial_;
};

}  // namespace v2p
