#include "agent/qemu_processes.hpp"

#include <fcntl.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "agent/device_watch.hpp"
#include "cli/attach_session.hpp"
#include "common/error.hpp"

namespace v2p::agent {

namespace fs = std::filesystem;

std::vector<QemuProcess> find_qemu_processes(const std::vector<std::string>& opted_in) {
  std::vector<QemuProcess> out;
  if (opted_in.empty()) return out;
  const bool all = std::find(opted_in.begin(), opted_in.end(), "*") != opted_in.end();
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/proc", ec)) {
    const auto name = e.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    std::error_code lec;
    const auto exe = fs::read_symlink(e.path() / "exe", lec).filename().string();
    if (lec || (exe.rfind("qemu-system-", 0) != 0 && exe != "qemu-storage-daemon")) continue;
    const auto pid = static_cast<pid_t>(std::stol(name));
    std::string vm = cli::qemu_vm_name(pid);
    if (vm.empty()) vm = "qemu-" + name;
    if (all || std::find(opted_in.begin(), opted_in.end(), vm) != opted_in.end())
      out.push_back({pid, vm});
  }
  return out;
}

std::vector<DeviceId> image_devices(pid_t pid) {
  std::set<std::uint32_t> seen;
  std::vector<DeviceId> out;
  const fs::path proc = "/proc/" + std::to_string(pid);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(proc / "fd", ec)) {
    std::error_code lec;
    const auto target = fs::read_symlink(e.path(), lec);
    if (lec || !target.is_absolute() || !fs::is_regular_file(target, lec)) continue;
    std::ifstream info(proc / "fdinfo" / e.path().filename());
    std::string key;
    unsigned flags = 0;
    while (info >> key) {
      if (key == "flags:") {
        info >> std::oct >> flags;
        break;
      }
    }
    if ((flags & O_ACCMODE) == O_RDONLY) continue;
    try {
      for (const auto d : devices_for_image(target.string()))
        if (seen.insert(d.kernel()).second) out.push_back(d);
    } catch (const Error&) {
      // Not on a block device (tmpfs, a pipe's file): nothing to watch.
    }
  }
  return out;
}

}  // namespace v2p::agent
