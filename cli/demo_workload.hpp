// The workload `v2p demo` drives through its export: a QEMU guest under TCG when qemu-system and
// the test guest are available, else fio's nbd engine, else qemu-io. All are real NBD clients
// nobody on this project wrote.
#pragma once

#include <csignal>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/subprocess.hpp"

namespace v2p::cli {

enum class WorkloadKind { kAuto, kGuest, kFio, kQemuIo };

WorkloadKind parse_workload_kind(const std::string& name);

struct WorkloadPlan {
  WorkloadKind kind = WorkloadKind::kAuto;
  std::filesystem::path socket;
  std::string export_name;
  std::filesystem::path guest_dir;  // holds vmlinuz and initrd.img (scripts/guest/build-guest.sh)
  unsigned mib = 16;                // data the workload writes and reads back
};

class Workload {
 public:
  // Resolves kAuto to the best available kind; throws v2p::Error when the requested one is not
  // available, naming what is missing.
  explicit Workload(WorkloadPlan plan);

  [[nodiscard]] std::string description() const;
  // Lines worth showing the operator (guest progress, fio summary), since the last call.
  std::vector<std::string> progress_lines();
  bool exited() { return child_->exited(); }
  // True when the workload exited cleanly and verified its own data.
  [[nodiscard]] bool succeeded() const noexcept;
  void stop() { child_->terminate(SIGTERM); }

 private:
  std::vector<std::string> command() const;

  WorkloadPlan plan_;
  std::unique_ptr<ChildProcess> child_;
  bool saw_success_marker_ = false;
  bool saw_failure_marker_ = false;
};

}  // namespace v2p::cli
