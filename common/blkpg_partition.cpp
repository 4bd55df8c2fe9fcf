#include "common/blkpg_partition.hpp"

#include <fcntl.h>
#include <linux/blkpg.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

#include "common/error.hpp"

namespace v2p {
namespace {

// glibc's makedev(); <sys/sysmacros.h> would turn DeviceId::major() into a macro call.
dev_t user_dev_t(std::uint64_t ma, std::uint64_t mi) {
  return static_cast<dev_t>(((ma & 0xfffff000ULL) << 32) | ((ma & 0xfffULL) << 8) |
                            ((mi & 0xffffff00ULL) << 12) | (mi & 0xffULL));
}

}  // namespace

BlkpgPartition::BlkpgPartition(const std::string& disk, std::uint64_t start_bytes,
                               std::uint64_t length_bytes, const std::filesystem::path& node_dir)
    : disk_(disk), start_(start_bytes), length_(length_bytes) {
  const auto name = std::filesystem::path(disk).filename().string();
  const std::string sys = "/sys/block/" + name + "/" + name + "p1";
  if (!std::filesystem::exists(sys)) {
    blkpg(BLKPG_ADD_PARTITION);
    added_ = true;
  }
  try {
    std::ifstream dev(sys + "/dev");
    unsigned ma = 0;
    unsigned mi = 0;
    char colon = 0;
    if (!(dev >> ma >> colon >> mi)) throw Error("no sysfs entry for " + name + "p1");
    node_ = node_dir / (name + "p1");
    if (::mknod(node_.c_str(), S_IFBLK | 0600, user_dev_t(ma, mi)) != 0) {
      const int err = errno;
      node_.clear();
      throw system_error("mknod " + (node_dir / (name + "p1")).string(), err);
    }
  } catch (...) {
    if (added_) blkpg(BLKPG_DEL_PARTITION);
    throw;
  }
}

BlkpgPartition::~BlkpgPartition() {
  if (!node_.empty()) ::unlink(node_.c_str());
  if (!added_) return;
  try {
    blkpg(BLKPG_DEL_PARTITION);
  } catch (const Error&) {
    // Gone with its disk already.
  }
}

void BlkpgPartition::blkpg(int op) const {
  const int fd = ::open(disk_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw system_error("open " + disk_);
  blkpg_partition part{};
  part.start = static_cast<long long>(start_);
  part.length = static_cast<long long>(length_);
  part.pno = 1;
  blkpg_ioctl_arg arg{};
  arg.op = op;
  arg.datalen = sizeof part;
  arg.data = &part;
  const int rc = ::ioctl(fd, BLKPG, &arg);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw system_error("BLKPG on " + disk_, err);
}

}  // namespace v2p
