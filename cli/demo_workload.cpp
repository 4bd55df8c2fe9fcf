#include "cli/demo_workload.hpp"

#include <signal.h>

#include <fmt/core.h>

#include "common/error.hpp"

namespace v2p::cli {
namespace {

bool guest_available(const WorkloadPlan& p) {
  return have_tool("qemu-system-x86_64") && std::filesystem::exists(p.guest_dir / "vmlinuz") &&
         std::filesystem::exists(p.guest_dir / "initrd.img");
}

std::string nbd_uri(const WorkloadPlan& p) {
  return fmt::format("nbd+unix:///{}?socket={}", p.export_name, p.socket.string());
}

bool contains(const std::string& s, const char* needle) {
  return s.find(needle) != std::string::npos;
}

}  // namespace

WorkloadKind parse_workload_kind(const std::string& name) {
  if (name == "auto") return WorkloadKind::kAuto;
  if (name == "guest") return WorkloadKind::kGuest;
  if (name == "fio") return WorkloadKind::kFio;
  if (name == "qemu-io") return WorkloadKind::kQemuIo;
  throw Error("unknown workload '" + name + "' (use auto, guest, fio or qemu-io)");
}

Workload::Workload(WorkloadPlan plan) : plan_(std::move(plan)) {
  if (plan_.kind == WorkloadKind::kAuto) {
    plan_.kind = guest_available(plan_) ? WorkloadKind::kGuest
                 : have_tool("fio")     ? WorkloadKind::kFio
                                        : WorkloadKind::kQemuIo;
  }
  if (plan_.kind == WorkloadKind::kGuest && !guest_available(plan_)) {
    throw Error("the guest workload needs qemu-system-x86_64 and a test guest in " +
                plan_.guest_dir.string() + " (scripts/setup.sh builds it)");
  }
  const char* tool = plan_.kind == WorkloadKind::kFio      ? "fio"
                     : plan_.kind == WorkloadKind::kQemuIo ? "qemu-io"
                                                           : "qemu-system-x86_64";
  if (!have_tool(tool))
    throw Error(std::string("the workload needs ") + tool + ", which is not installed");
  child_ = std::make_unique<ChildProcess>(command());
}

std::vector<std::string> Workload::command() const {
  const auto mib = std::to_string(plan_.mib);
  switch (plan_.kind) {
    case WorkloadKind::kGuest:
      return {
          "qemu-system-x86_64",
          "-accel",
          "tcg",
          "-m",
          "256",
          "-nographic",
          "-no-reboot",
          "-kernel",
          (plan_.guest_dir / "vmlinuz").string(),
          "-initrd",
          (plan_.guest_dir / "initrd.img").string(),
          "-append",
          "console=ttyS0 panic=-1 quiet v2p.mib=" + mib + " v2p.chunks=4",
          "-drive",
          fmt::format("driver=nbd,server.type=unix,server.path={},export={},if=virtio,cache=none",
                      plan_.socket.string(), plan_.export_name)};
    case WorkloadKind::kFio:
      // Random 64k writes at QD16, then fio reads everything back and checks every block (no
      // verify state file: a failed verify would leave it in the caller's folder).
      return {"fio",
              "--name=v2p-demo",
              "--ioengine=nbd",
              "--uri=" + nbd_uri(plan_),
              "--rw=randwrite",
              "--bs=64k",
              "--iodepth=16",
              "--size=" + mib + "M",
              "--verify=crc32c",
              "--do_verify=1",
              "--verify_state_save=0",
              "--output-format=terse"};
    case WorkloadKind::kQemuIo:
    case WorkloadKind::kAuto:
      break;
  }
  const auto bytes = std::to_string(plan_.mib) + "M";
  return {"qemu-io", "-f",
          "raw",     nbd_uri(plan_),
          "-c",      "write -P 0xab 0 " + bytes,
          "-c",      "read -P 0xab 0 " + bytes,
          "-c",      "flush"};
}

std::string Workload::description() const {
  switch (plan_.kind) {
    case WorkloadKind::kGuest:
      return fmt::format(
          "QEMU guest (TCG, Debian cloud kernel) writing and reading back {} MiB on its virtio "
          "disk",
          plan_.mib);
    case WorkloadKind::kFio:
      return fmt::format("fio nbd engine, 64k random writes at QD16 then crc32c verify, {} MiB",
                         plan_.mib);
    default:
      return fmt::format("qemu-io write -P 0xab then read -P 0xab, {} MiB", plan_.mib);
  }
}

std::vector<std::string> Workload::progress_lines() {
  std::vector<std::string> shown;
  for (auto& line : child_->read_lines()) {
    const auto pos = line.find("V2P-GUEST-");
    if (pos != std::string::npos) line = line.substr(pos);
    if (contains(line, "V2P-GUEST-OK")) saw_success_marker_ = true;
    if (contains(line, "V2P-GUEST-FAIL") || contains(line, "V2P-GUEST-MISMATCH") ||
        contains(line, "Pattern verification failed") || contains(line, "verify: bad")) {
      saw_failure_marker_ = true;
    }
    const bool interesting = pos != std::string::npos ||
                             (plan_.kind == WorkloadKind::kQemuIo && !line.empty()) ||
                             contains(line, "error") || contains(line, "Error");
    if (interesting) shown.push_back(std::move(line));
  }
  return shown;
}

bool Workload::succeeded() const noexcept {
  if (child_->exit_code() != 0 || saw_failure_marker_) return false;
  return plan_.kind != WorkloadKind::kGuest || saw_success_marker_;
}

}  // namespace v2p::cli
