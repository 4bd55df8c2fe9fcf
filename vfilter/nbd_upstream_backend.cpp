#include "vfilter/nbd_upstream_backend.hpp"

#include <libnbd.h>
#include <sys/socket.h>

#include <fmt/core.h>

#include <algorithm>
#include <cerrno>

#include "common/error.hpp"

namespace v2p::vfilter {
namespace {

// libnbd reports errors per thread; turn the last one into -errno (EIO when it has none).
int last_errno() {
  const int e = nbd_get_errno();
  return e > 0 ? -e : -EIO;
}

// Requests larger than the upstream's limit are split; 32 MiB is what every server accepts.
constexpr std::uint64_t kMaxRequest = 32ULL << 20;

}  // namespace

class NbdUpstreamBackend::Lease {
 public:
  explicit Lease(NbdUpstreamBackend& b) : b_(b), h_(b.acquire()) {}
  ~Lease() { b_.release(h_); }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  nbd_handle* get() const noexcept { return h_; }

 private:
  NbdUpstreamBackend& b_;
  nbd_handle* h_;
};

NbdUpstreamBackend::NbdUpstreamBackend(std::string uri, unsigned connections, bool read_only)
    : uri_(std::move(uri)), read_only_(read_only) {
  connections = std::max(connections, 1U);
  try {
    for (unsigned i = 0; i < connections; ++i) {
      nbd_handle* h = nbd_create();
      if (h == nullptr) throw Error(fmt::format("libnbd: {}", nbd_get_error()));
      all_.push_back(h);
      if (nbd_connect_uri(h, uri_.c_str()) == -1) {
        throw Error(fmt::format("cannot connect to the upstream {}: {}", uri_, nbd_get_error()));
      }
      const int64_t size = nbd_get_size(h);
      if (size < 0) throw Error(fmt::format("upstream {}: {}", uri_, nbd_get_error()));
      if (i == 0) {
        size_ = static_cast<std::uint64_t>(size);
        can_fua_ = nbd_can_fua(h) == 1;
        can_trim_ = nbd_can_trim(h) == 1;
        can_zero_ = nbd_can_zero(h) == 1;
        multi_conn_ = nbd_can_multi_conn(h) == 1;
        if (!read_only_ && nbd_is_read_only(h) == 1) {
          throw Error(fmt::format("upstream {} is read-only; configure the vdisk read_only", uri_));
        }
      } else if (static_cast<std::uint64_t>(size) != size_) {
        throw Error(fmt::format("upstream {} changed size between connections", uri_));
      }
      // The serving process, so the correlator can attribute its untagged host I/O.
      const int fd = static_cast<int>(nbd_aio_get_fd(h));
      ucred cred{};
      socklen_t len = sizeof cred;
      if (fd >= 0 && ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.pid > 0 &&
          std::find(pids_.begin(), pids_.end(), cred.pid) == pids_.end()) {
        pids_.push_back(cred.pid);
      }
    }
  } catch (...) {
    for (nbd_handle* h : all_) nbd_close(h);
    throw;
  }
  idle_ = all_;
}

NbdUpstreamBackend::~NbdUpstreamBackend() {
  for (nbd_handle* h : all_) {
    nbd_shutdown(h, 0);
    nbd_close(h);
  }
}

nbd_handle* NbdUpstreamBackend::acquire() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return !idle_.empty(); });
  nbd_handle* h = idle_.back();
  idle_.pop_back();
  return h;
}

void NbdUpstreamBackend::release(nbd_handle* h) {
  {
    std::lock_guard lock(mu_);
    idle_.push_back(h);
  }
  cv_.notify_one();
}

int NbdUpstreamBackend::read(const IoTarget&, std::span<std::byte> out, std::uint64_t offset) {
  Lease h(*this);
  for (std::uint64_t done = 0; done < out.size();) {
    const std::uint64_t n = std::min<std::uint64_t>(out.size() - done, kMaxRequest);
    if (nbd_pread(h.get(), out.data() + done, n, offset + done, 0) == -1) return last_errno();
    done += n;
  }
  return 0;
}

int NbdUpstreamBackend::write(const IoTarget& who, std::span<const std::byte> data,
                              std::uint64_t offset, Fua fua) {
  if (read_only_) return -EROFS;
  const bool native_fua = fua == Fua::kYes && can_fua_;
  {
    Lease h(*this);
    for (std::uint64_t done = 0; done < data.size();) {
      const std::uint64_t n = std::min<std::uint64_t>(data.size() - done, kMaxRequest);
      const std::uint32_t flags = native_fua ? LIBNBD_CMD_FLAG_FUA : 0;
      if (nbd_pwrite(h.get(), data.data() + done, n, offset + done, flags) == -1) {
        return last_errno();
      }
      done += n;
    }
  }
  return fua == Fua::kYes && !native_fua ? flush(who) : 0;
}

int NbdUpstreamBackend::write_zeroes(const IoTarget& who, std::uint64_t offset,
                                     std::uint64_t length, MayPunch may_punch, Fua fua) {
  if (read_only_) return -EROFS;
  if (!can_zero_) {
    static const std::vector<std::byte> zeros(1U << 20);
    for (std::uint64_t done = 0; done < length;) {
      const std::uint64_t n = std::min<std::uint64_t>(length - done, zeros.size());
      if (const int rc = write(who, std::span(zeros.data(), n), offset + done, Fua::kNo); rc < 0) {
        return rc;
      }
      done += n;
    }
    return fua == Fua::kYes ? flush(who) : 0;
  }
  {
    Lease h(*this);
    for (std::uint64_t done = 0; done < length;) {
      const std::uint64_t n = std::min<std::uint64_t>(length - done, kMaxRequest);
      std::uint32_t flags = may_punch == MayPunch::kYes ? 0 : LIBNBD_CMD_FLAG_NO_HOLE;
      if (fua == Fua::kYes && can_fua_) flags |= LIBNBD_CMD_FLAG_FUA;
      if (nbd_zero(h.get(), n, offset + done, flags) == -1) return last_errno();
      done += n;
    }
  }
  return fua == Fua::kYes && !can_fua_ ? flush(who) : 0;
}

int NbdUpstreamBackend::trim(const IoTarget&, std::uint64_t offset, std::uint64_t length) {
  if (read_only_) return -EROFS;
  if (!can_trim_) return 0;  // advisory
  Lease h(*this);
  for (std::uint64_t done = 0; done < length;) {
    const std::uint64_t n = std::min<std::uint64_t>(length - done, kMaxRequest);
    if (nbd_trim(h.get(), n, offset + done, 0) == -1) return last_errno();
    done += n;
  }
  return 0;
}

int NbdUpstreamBackend::flush(const IoTarget&) {
  if (multi_conn_ || all_.size() == 1) {
    // The upstream promises a flush on one connection covers the writes of all of them.
    Lease h(*this);
    return nbd_flush(h.get(), 0) == -1 ? last_errno() : 0;
  }
  // Otherwise every handle's completed writes must be flushed, not only this worker's.
  std::lock_guard serial(flush_mu_);
  std::vector<nbd_handle*> held;
  for (std::size_t i = 0; i < all_.size(); ++i) held.push_back(acquire());
  int rc = 0;
  for (nbd_handle* h : held) {
    if (rc == 0 && nbd_flush(h, 0) == -1) rc = last_errno();
  }
  for (nbd_handle* h : held) release(h);
  return rc;
}

}  // namespace v2p::vfilter
