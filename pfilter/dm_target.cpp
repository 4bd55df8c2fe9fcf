#include "pfilter/dm_target.hpp"

#include <fcntl.h>
#include <libdevmapper.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <sstream>

#include "common/error.hpp"

namespace v2p::pfilter {

namespace {

std::uint64_t field(std::istringstream& in, const char* what) {
  std::string s;
  if (!(in >> s)) throw Error(std::string("dm-v2p status: missing ") + what);
  std::size_t used = 0;
  std::uint64_t v = 0;
  try {
    v = std::stoull(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size()) throw Error(std::string("dm-v2p status: bad ") + what + " '" + s + "'");
  return v;
}

struct TaskDeleter {
  void operator()(dm_task* t) const noexcept { dm_task_destroy(t); }
};
using Task = std::unique_ptr<dm_task, TaskDeleter>;

// Without udev (containers, the test guest) libdevmapper would wait for udev to make the
// /dev/mapper node and never get it: make the nodes itself then.
void prepare_libdevmapper() {
  if (!std::filesystem::exists("/run/udev/control")) setenv("DM_DISABLE_UDEV", "1", 0);
}

Task task(int type, const std::string& name) {
  prepare_libdevmapper();
  Task t(dm_task_create(type));
  if (!t) {
    throw Error(
        "libdevmapper cannot reach the kernel's device-mapper (/dev/mapper/control): needs root "
        "and dm-mod (modprobe dm-mod)");
  }
  if (!dm_task_set_name(t.get(), name.c_str())) throw Error("libdevmapper: bad name " + name);
  return t;
}

void run(const Task& t, const std::string& what) {
  if (!dm_task_run(t.get())) {
    throw Error(what +
                " failed: see the kernel log (dmesg) for the reason; needs root, device-mapper "
                "and the dm-v2p module (docs/dm-target.md)");
  }
}

std::uint64_t device_sectors(const std::string& device) {
  const int fd = ::open(device.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw system_error("cannot open " + device);
  std::uint64_t bytes = 0;
  const int rc = ::ioctl(fd, BLKGETSIZE64, &bytes);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw system_error(device + " is not a block device", err);
  return bytes / 512;
}

}  // namespace

DmV2pStatus parse_dm_v2p_status(std::string_view params) {
  std::istringstream in{std::string(params)};
  DmV2pStatus st;
  st.records = field(in, "records");
  st.dropped = field(in, "dropped");
  const auto n = field(in, "class count");
  for (std::uint64_t i = 0; i < n; ++i) {
    DmV2pClass c;
    if (!(in >> c.name)) throw Error("dm-v2p status: missing class name");
    c.ios = field(in, "ios");
    c.bytes = field(in, "bytes");
    c.iops_limit = field(in, "iops limit");
    c.bps_limit = field(in, "bandwidth limit");
    if (!(in >> c.prio) || c.prio.find(':') == std::string::npos)
      throw Error("dm-v2p status: bad priority");
    c.delayed = field(in, "delayed");
    st.classes.push_back(std::move(c));
  }
  std::string extra;
  if (in >> extra) throw Error("dm-v2p status: unexpected '" + extra + "'");
  return st;
}

std::string dm_v2p_params(const std::string& device, std::uint64_t offset) {
  return device + " " + std::to_string(offset);
}

void dm_v2p_create(const std::string& name, const std::string& device, std::uint64_t offset) {
  const auto sectors = device_sectors(device);
  if (offset >= sectors) throw Error("offset is beyond the end of " + device);
  const auto t = task(DM_DEVICE_CREATE, name);
  const auto params = dm_v2p_params(device, offset);
  if (!dm_task_add_target(t.get(), 0, sectors - offset, "v2p", params.c_str()))
    throw Error("libdevmapper: cannot add the v2p target");
  run(t, "creating " + name);
  dm_task_update_nodes();
}

void dm_v2p_remove(const std::string& name) {
  const auto t = task(DM_DEVICE_REMOVE, name);
  run(t, "removing " + name);
  dm_task_update_nodes();
}

std::string dm_v2p_status_text(const std::string& name) {
  const auto t = task(DM_DEVICE_STATUS, name);
  run(t, "status of " + name);
  std::uint64_t start = 0, length = 0;
  char* type = nullptr;
  char* params = nullptr;
  dm_get_next_target(t.get(), nullptr, &start, &length, &type, &params);
  if (!type || std::string(type) != "v2p") throw Error(name + " is not a v2p device");
  return params ? params : "";
}

std::string dm_v2p_message(const std::string& name, const std::string& message) {
  const auto t = task(DM_DEVICE_TARGET_MSG, name);
  if (!dm_task_set_sector(t.get(), 0) || !dm_task_set_message(t.get(), message.c_str()))
    throw Error("libdevmapper: cannot build the message");
  run(t, "message '" + message + "' to " + name);
  const char* answer = dm_task_get_message_response(t.get());
  return answer ? answer : "";
}

}  // namespace v2p::pfilter
