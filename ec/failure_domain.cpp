#include "ec/failure_domain.hpp"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <tuple>
#include <vector>

#include "common/error.hpp"
#include "common/host_layout/mountinfo.hpp"

namespace v2p::ec {
namespace {

namespace fs = std::filesystem;

std::string read_line(const fs::path& p) {
  std::ifstream in(p);
  std::string s;
  std::getline(in, s);
  return s;
}

std::string dev_string(unsigned ma, unsigned mi) {
  return std::to_string(ma) + ":" + std::to_string(mi);
}

bool parse_dev(const std::string& s, unsigned& ma, unsigned& mi) {
  return std::sscanf(s.c_str(), "%u:%u", &ma, &mi) == 2;
}

// Mount source and type of the mount whose device is ma:mi ("" when none).
std::pair<std::string, std::string> mount_of(unsigned ma, unsigned mi, const fs::path& mountinfo) {
  for (const auto& m : host_layout::read_mountinfo(mountinfo)) {
    if (m.major == ma && m.minor == mi) return {m.source, m.fs_type};
  }
  return {};
}

constexpr int kMaxDepth = 8;  // loop on loop on dm …; a cycle cannot happen, but stay bounded

FailureDomain resolve(unsigned ma, unsigned mi, const fs::path& sysfs, const fs::path& mountinfo,
                      int depth) {
  if (ma == 0) {
    const auto [source, type] = mount_of(ma, mi, mountinfo);
    struct stat st {};
    if (!source.empty() && depth < kMaxDepth && ::stat(source.c_str(), &st) == 0 &&
        S_ISBLK(st.st_mode)) {
      return resolve(::major(st.st_rdev), ::minor(st.st_rdev), sysfs, mountinfo, depth + 1);
    }
    return {ma, mi, (type.empty() ? std::string("anonymous") : type) + " " + dev_string(ma, mi)};
  }
  std::error_code ec;
  fs::path dir = fs::canonical(sysfs / "dev/block" / dev_string(ma, mi), ec);
  if (ec) return {ma, mi, dev_string(ma, mi)};
  if (fs::exists(dir / "partition")) dir = dir.parent_path();
  const std::string name = dir.filename().string();
  unsigned dma = ma, dmi = mi;
  if (!parse_dev(read_line(dir / "dev"), dma, dmi)) {
    dma = ma;
    dmi = mi;
  }
  if (depth < kMaxDepth) {
    const auto backing = read_line(dir / "loop/backing_file");
    struct stat st {};
    if (!backing.empty() && ::stat(backing.c_str(), &st) == 0) {
      return resolve(::major(st.st_dev), ::minor(st.st_dev), sysfs, mountinfo, depth + 1);
    }
    if (fs::is_directory(dir / "slaves", ec)) {
      std::vector<fs::path> slaves;
      for (const auto& e : fs::directory_iterator(dir / "slaves", ec)) slaves.push_back(e.path());
      unsigned sma = 0, smi = 0;
      if (slaves.size() == 1 && parse_dev(read_line(slaves[0] / "dev"), sma, smi)) {
        return resolve(sma, smi, sysfs, mountinfo, depth + 1);
      }
    }
  }
  return {dma, dmi, name};
}

}  // namespace

std::string FailureDomain::label() const {
  return name + " (" + dev_string(major, minor) + ")";
}

FailureDomain failure_domain_of_device(dev_t dev, const fs::path& sysfs,
                                       const fs::path& mountinfo) {
  return resolve(::major(dev), ::minor(dev), sysfs, mountinfo, 0);
}

FailureDomain failure_domain_of(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw system_error("cannot stat " + path.string());
  return failure_domain_of_device(st.st_dev);
}

}  // namespace v2p::ec
