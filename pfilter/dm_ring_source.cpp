#include "pfilter/dm_ring_source.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

#include "common/error.hpp"

extern "C" {
#include "kmod/dm-v2p-uapi.h"
}

namespace v2p::pfilter {

// The target's record is the correlator's event, field by field (docs/formats.md, type 3).
static_assert(sizeof(v2p_dm_record) == sizeof(PhysEvent));
static_assert(offsetof(v2p_dm_record, ts_ns) == offsetof(PhysEvent, ts_ns));
static_assert(offsetof(v2p_dm_record, sector) == offsetof(PhysEvent, sector));
static_assert(offsetof(v2p_dm_record, old_sector) == offsetof(PhysEvent, old_sector));
static_assert(offsetof(v2p_dm_record, latency_ns) == offsetof(PhysEvent, latency_ns));
static_assert(offsetof(v2p_dm_record, dev) == offsetof(PhysEvent, dev));
static_assert(offsetof(v2p_dm_record, old_dev) == offsetof(PhysEvent, old_dev));
static_assert(offsetof(v2p_dm_record, bytes) == offsetof(PhysEvent, bytes));
static_assert(offsetof(v2p_dm_record, tgid) == offsetof(PhysEvent, tgid));
static_assert(offsetof(v2p_dm_record, tid) == offsetof(PhysEvent, tid));
static_assert(offsetof(v2p_dm_record, cmd_flags) == offsetof(PhysEvent, cmd_flags));
static_assert(offsetof(v2p_dm_record, ioprio) == offsetof(PhysEvent, ioprio));
static_assert(offsetof(v2p_dm_record, op) == offsetof(PhysEvent, op));
static_assert(offsetof(v2p_dm_record, kind) == offsetof(PhysEvent, kind));
static_assert(offsetof(v2p_dm_record, error) == offsetof(PhysEvent, error));
static_assert(offsetof(v2p_dm_record, comm) == offsetof(PhysEvent, comm));
static_assert(V2P_DM_KIND_QUEUE == static_cast<int>(PhysEventKind::kQueue));
static_assert(V2P_DM_OP_WRITE == static_cast<int>(IoOp::kWrite));
static_assert(V2P_DM_OP_FLUSH == static_cast<int>(IoOp::kFlush));
static_assert(V2P_DM_OP_OTHER == static_cast<int>(IoOp::kOther));

namespace {
constexpr std::size_t kBatch = 4096;  // records per read(2)
}

DmRingSource::DmRingSource(const std::filesystem::path& path) : buffer_(kBatch) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd_ < 0) {
    const int err = errno;
    if (err == ENOENT && path == kDmRingPath) {
      throw Error(path.string() +
                  " does not exist: load the dm-v2p module (insmod dm-v2p.ko, built from "
                  "kmod/, see docs/dm-target.md)");
    }
    throw system_error("cannot open " + path.string(), err);
  }
}

DmRingSource::~DmRingSource() {
  if (fd_ >= 0) ::close(fd_);
}

std::size_t DmRingSource::poll(int timeout_ms,
                               const std::function<void(const PhysEvent&)>& on_event) {
  if (timeout_ms != 0) {
    pollfd p{fd_, POLLIN, 0};
    const int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno != EINTR) throw system_error("poll " + std::string(kDmRingPath));
  }
  std::size_t delivered = 0;
  auto* bytes = reinterpret_cast<char*>(buffer_.data());
  for (;;) {
    const ssize_t n = ::read(fd_, bytes + partial_, buffer_.size() * sizeof(PhysEvent) - partial_);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      throw system_error("read " + std::string(kDmRingPath));
    }
    if (n == 0) break;  // end of a file of records
    const std::size_t have = partial_ + static_cast<std::size_t>(n);
    const std::size_t records = have / sizeof(PhysEvent);
    for (std::size_t i = 0; i < records; ++i) on_event(buffer_[i]);
    delivered += records;
    partial_ = have % sizeof(PhysEvent);
    std::memmove(bytes, bytes + records * sizeof(PhysEvent), partial_);
  }
  return delivered;
}

DmRingStats DmRingSource::stats() const {
  v2p_dm_ring_stats st{};
  if (::ioctl(fd_, V2P_DM_IOC_RING_STATS, &st) != 0) {
    throw system_error("V2P_DM_IOC_RING_STATS (is this the dm-v2p ring?)");
  }
  return {st.produced, st.dropped, st.delivered, st.capacity};
}

}  // namespace v2p::pfilter
