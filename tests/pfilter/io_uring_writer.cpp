#include "pfilter/io_uring_writer.hpp"

#include <fcntl.h>
#include <liburing.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <memory>

#include "common/error.hpp"
#include "v2p/tag.hpp"

namespace v2p::test {

TaggedBlock tagged_block(std::uint64_t offset, std::uint16_t slot) {
  return {offset, slot, tag::ioprio_for_slot(slot)};
}

void write_tagged(const std::filesystem::path& file, const std::vector<TaggedBlock>& blocks,
                  std::uint32_t block_size, bool read_instead) {
  const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0644);
  if (fd < 0) throw system_error("cannot open " + file.string() + " with O_DIRECT");
  void* raw = nullptr;
  if (::posix_memalign(&raw, 4096, block_size) != 0) {
    ::close(fd);
    throw Error("out of memory");
  }
  std::unique_ptr<void, decltype(&std::free)> buf(raw, &std::free);
  std::memset(raw, 0x5a, block_size);
  io_uring ring{};
  if (const int rc = io_uring_queue_init(8, &ring, 0); rc < 0) {
    ::close(fd);
    throw system_error("io_uring_queue_init", -rc);
  }
  std::string failure;
  for (const auto& b : blocks) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    if (read_instead) {
      io_uring_prep_read(sqe, fd, raw, block_size, b.offset);
    } else {
      io_uring_prep_write(sqe, fd, raw, block_size, b.offset);
    }
    sqe->ioprio = b.ioprio;
    io_uring_submit(&ring);
    io_uring_cqe* cqe = nullptr;
    if (const int rc = io_uring_wait_cqe(&ring, &cqe); rc < 0) {
      failure = "io_uring_wait_cqe: " + std::string(std::strerror(-rc));
      break;
    }
    const int res = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    if (res != static_cast<int>(block_size)) {
      failure = "tagged I/O at " + std::to_string(b.offset) + " returned " + std::to_string(res);
      break;
    }
  }
  io_uring_queue_exit(&ring);
  if (failure.empty() && !read_instead && ::fsync(fd) != 0) failure = "fsync failed";
  ::close(fd);
  if (!failure.empty()) throw Error(failure);
}

}  // namespace v2p::test
