#include "correlator/qemu_nodes.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "common/error.hpp"

namespace v2p::correlator {
namespace {

// QEMU's BlockDriver.format_name values (7.2) a node may carry.
constexpr std::array<const char*, 28> kDrivers = {"qcow2",
                                                  "raw",
                                                  "file",
                                                  "host_device",
                                                  "host_cdrom",
                                                  "qcow",
                                                  "qed",
                                                  "vmdk",
                                                  "vpc",
                                                  "vdi",
                                                  "vhdx",
                                                  "luks",
                                                  "throttle",
                                                  "copy-on-read",
                                                  "blkdebug",
                                                  "blkverify",
                                                  "nbd",
                                                  "null-co",
                                                  "null-aio",
                                                  "compress",
                                                  "preallocate",
                                                  "quorum",
                                                  "parallels",
                                                  "cloop",
                                                  "dmg",
                                                  "bochs",
                                                  "copy-before-write",
                                                  "snapshot-access"};

constexpr std::size_t kDrvScan = 128;     // bytes of the struct searched for drv
constexpr std::size_t kNameScan = 16384;  // ... and for filename
constexpr std::size_t kPathMax = 4096;

}  // namespace

bool is_protocol_driver(const std::string& format) {
  return format == "file" || format == "host_device" || format == "host_cdrom";
}

QemuNodeReader::QemuNodeReader(pid_t pid) : pid_(pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/mem";
  mem_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (mem_ < 0) throw system_error("cannot read the memory of process " + std::to_string(pid));
}

QemuNodeReader::~QemuNodeReader() {
  if (mem_ >= 0) ::close(mem_);
}

bool QemuNodeReader::read(std::uint64_t addr, void* out, std::size_t n) const {
  if (addr == 0) return false;
  return ::pread(mem_, out, n, static_cast<off_t>(addr)) == static_cast<ssize_t>(n);
}

std::optional<std::string> QemuNodeReader::format_at(std::uint64_t drv) const {
  std::uint64_t name_ptr = 0;
  if (!read(drv, &name_ptr, sizeof name_ptr)) return std::nullopt;
  char name[32] = {};
  if (!read(name_ptr, name, sizeof name - 1)) return std::nullopt;
  const std::string s(name, ::strnlen(name, sizeof name));
  for (const char* d : kDrivers)
    if (s == d) return s;
  return std::nullopt;
}

std::string QemuNodeReader::absolute(const std::string& name) const {
  if (!name.empty() && name.front() == '/') return name;
  std::error_code ec;
  const auto cwd = std::filesystem::read_symlink("/proc/" + std::to_string(pid_) + "/cwd", ec);
  return ec ? name : (cwd / name).lexically_normal().string();
}

std::set<std::string> QemuNodeReader::open_files() const {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid_) + "/fd", ec)) {
    std::error_code lec;
    const auto target = std::filesystem::read_symlink(e.path(), lec);
    if (!lec && target.is_absolute()) out.insert(target.string());
  }
  return out;
}

std::optional<NodeInfo> QemuNodeReader::node(std::uint64_t bs) {
  std::vector<char> buf(kNameScan);
  if (!read(bs, buf.data(), buf.size())) {
    // The struct may end near the end of a mapping: fall back to what the known fields need.
    if (!drv_off_ || !name_off_ || !read(bs, buf.data(), *name_off_ + kPathMax))
      return std::nullopt;
  }
  NodeInfo info;
  if (!drv_off_) {
    for (std::size_t o = 0; o + 8 <= kDrvScan; o += 8) {
      std::uint64_t p = 0;
      std::memcpy(&p, buf.data() + o, 8);
      if (format_at(p)) {
        drv_off_ = o;
        break;
      }
    }
    if (!drv_off_) return std::nullopt;
  }
  std::uint64_t drv = 0;
  std::memcpy(&drv, buf.data() + *drv_off_, 8);
  const auto format = format_at(drv);
  if (!format) return std::nullopt;
  info.format = *format;
  info.protocol = is_protocol_driver(info.format);

  if (!name_off_) {
    const auto files = open_files();
    for (std::size_t o = *drv_off_ + 8; o + 2 < buf.size(); ++o) {
      if (buf[o] == 0 || buf[o - 1] != 0) continue;
      const std::size_t len = ::strnlen(buf.data() + o, buf.size() - o);
      if (len < 2 || o + len >= buf.size()) continue;
      const std::string s(buf.data() + o, len);
      if (files.contains(absolute(s))) {
        name_off_ = o;
        break;
      }
    }
    if (!name_off_) return std::nullopt;
  }
  const char* name = buf.data() + *name_off_;
  info.path = absolute(std::string(name, ::strnlen(name, kPathMax)));
  return info;
}

std::optional<std::string> QemuNodeReader::fd_path(std::uint64_t fd) {
  if (const auto it = fds_.find(fd); it != fds_.end()) return it->second;
  std::error_code ec;
  const auto target = std::filesystem::read_symlink(
      "/proc/" + std::to_string(pid_) + "/fd/" + std::to_string(fd), ec);
  if (ec) return std::nullopt;
  return fds_[fd] = target.string();
}

}  // namespace v2p::correlator
