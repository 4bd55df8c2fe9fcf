#include "common/sparse_image.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/error.hpp"

namespace v2p {

void create_sparse_image(const std::filesystem::path& image, std::uint64_t bytes, bool nocow) {
  const int fd = ::open(image.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) throw system_error("cannot create " + image.string());
  int flags = 0;
  bool ok = true;
  if (nocow) {
    ok = ::ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0;
    flags |= FS_NOCOW_FL;
    ok = ok && ::ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
  }
  const int err = errno;
  ::close(fd);
  if (!ok) throw system_error("cannot mark " + image.string() + " NOCOW", err);
  std::filesystem::resize_file(image, bytes);
}

}  // namespace v2p
