// The mirror filter: every write also goes to a second image (the VAIO replication class);
// reads come from the primary. A mirror write that fails does not fail the guest (the primary
// is the copy of record): the chunk is marked out of sync, the failure is reported once, and
// the next flush (or close) copies the out-of-sync chunks from the primary to the mirror.
//
//   v2p serve --image disk0.raw --socket s.sock --filter libmirror_filter.so
//             --filter-arg mirror=/mnt/replica/{vdisk}.raw
//
// Mirror I/O runs on the hook's own thread, so it carries the guest request's tag like the
// primary's: the map shows both copies of each guest write.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>
#include <v2p/filter.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

constexpr std::uint64_t kChunk = 64 << 10;  // the unit of resync

struct Mirror final : v2p::VdiskState {
  std::string vdisk;
  std::string path;
  int fd = -1;
  // Writes hold it shared (primary then mirror); a resync holds it exclusively, so a chunk it
  // copies cannot change between its read of the primary and its write of the mirror.
  std::shared_mutex order;
  std::mutex dirty_mu;
  std::set<std::uint64_t> dirty;  // chunk indexes the mirror does not match
  std::atomic<bool> reported{false};
  std::atomic<std::uint64_t> failures{0}, resynced{0};
  ~Mirror() override {
    if (fd >= 0) ::close(fd);
  }
};

int pwrite_all(int fd, const std::byte* p, std::uint64_t n, std::uint64_t off) {
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(off));
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -errno;
    if (w == 0) return -EIO;
    p += w;
    n -= static_cast<std::uint64_t>(w);
    off += static_cast<std::uint64_t>(w);
  }
  return 0;
}

// Zeros become a hole (a fresh mirror of a sparse image stays sparse); the rest is written.
int copy_chunk(int fd, std::span<const std::byte> data, std::uint64_t off) {
  const bool zeros =
      std::all_of(data.begin(), data.end(), [](std::byte b) { return b == std::byte{0}; });
  if (zeros && ::fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, static_cast<off_t>(off),
                           static_cast<off_t>(data.size())) == 0) {
    return 0;
  }
  return pwrite_all(fd, data.data(), data.size(), off);
}

class MirrorFilter final : public v2p::Filter {
 public:
  MirrorFilter(v2p::FilterContext& context, const v2p::FilterArgs& args) : context_(context) {
    for (const auto& [key, value] : args) {
      if (key != "mirror")
        throw std::invalid_argument("unknown argument '" + key + "' (known: mirror)");
      pattern_ = value;
    }
    if (pattern_.empty())
      throw std::invalid_argument("mirror=PATH is required ({vdisk} = the vdisk's name)");
  }

  std::string_view name() const override { return "mirror"; }
  v2p::FilterClass filter_class() const override { return v2p::FilterClass::kReplication; }

  // The mirror starts as a copy of the primary: opening is off the data path, so a full copy
  // here is allowed (and it makes a fresh mirror correct before the first write).
  std::unique_ptr<v2p::VdiskState> open(const v2p::VdiskInfo& vdisk, v2p::Next& next) override {
    auto m = std::make_unique<Mirror>();
    m->vdisk = std::string(vdisk.vdisk);
    m->path = pattern_;
    if (const auto at = m->path.find("{vdisk}"); at != std::string::npos) {
      m->path.replace(at, 7, m->vdisk);
    }
    m->fd = ::open(m->path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (m->fd < 0)
      throw std::runtime_error("cannot open mirror " + m->path + ": " + std::strerror(errno));
    if (::ftruncate(m->fd, static_cast<off_t>(next.size())) != 0) {
      throw std::runtime_error("cannot size mirror " + m->path + ": " + std::strerror(errno));
    }
    for (std::uint64_t c = 0; c * kChunk < next.size(); ++c) m->dirty.insert(c);
    if (const int rc = resync(*m, next); rc != 0) {
      throw std::runtime_error("cannot copy the vdisk to mirror " + m->path + ": " +
                               std::strerror(-rc));
    }
    m->resynced = 0;  // count only what failures made necessary
    return m;
  }
  void close(v2p::VdiskState* state, v2p::Next& next) override {
    auto& m = v2p::state_as<Mirror>(state);
    const int rc = resync(m, next);
    std::lock_guard lock(m.dirty_mu);
    context_.log("vdisk " + m.vdisk + ": mirror " + m.path + " " +
                 (rc == 0 && m.dirty.empty()
                      ? std::string("in sync")
                      : std::to_string(m.dirty.size()) + " chunks out of sync") +
                 ", " + std::to_string(m.failures.load()) + " failed mirror writes, " +
                 std::to_string(m.resynced.load()) + " chunks resynced");
  }

  int write(v2p::Next& next, v2p::VdiskState* state, const v2p::RequestContext& ctx,
            std::span<const std::byte> data, std::uint64_t offset, v2p::Fua fua) override {
    auto& m = v2p::state_as<Mirror>(state);
    std::shared_lock order(m.order);
    const int rc = next.write(ctx, data, offset, fua);
    if (rc != 0) return rc;  // the primary failed: the guest must know; the mirror is untouched
    int mrc = pwrite_all(m.fd, data.data(), data.size(), offset);
    if (mrc == 0 && fua == v2p::Fua::kYes && ::fdatasync(m.fd) != 0) mrc = -errno;
    if (mrc != 0) out_of_sync(m, offset, data.size(), mrc);
    return 0;
  }
  int zero(v2p::Next& next, v2p::VdiskState* state, const v2p::RequestContext& ctx,
           std::uint64_t offset, std::uint64_t length, v2p::MayPunch may_punch,
           v2p::Fua fua) override {
    auto& m = v2p::state_as<Mirror>(state);
    std::shared_lock order(m.order);
    const int rc = next.zero(ctx, offset, length, may_punch, fua);
    if (rc != 0) return rc;
    if (::fallocate(m.fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_ZERO_RANGE, static_cast<off_t>(offset),
                    static_cast<off_t>(length)) != 0) {
      out_of_sync(m, offset, length, -errno);  // the next resync writes the zeros
    }
    return 0;
  }
  // A flush makes both copies durable, and is where a degraded mirror catches up.
  int flush(v2p::Next& next, v2p::VdiskState* state, const v2p::RequestContext& ctx) override {
    auto& m = v2p::state_as<Mirror>(state);
    const int rc = next.flush(ctx);
    if (rc != 0) return rc;
    if (resync(m, next) == 0 && ::fdatasync(m.fd) != 0) out_of_sync(m, 0, 0, -errno);
    return 0;
  }
  // Trim is advisory: the mirror may keep the old bytes. The default forwards it.

 private:
  void out_of_sync(Mirror& m, std::uint64_t offset, std::uint64_t length, int err) {
    m.failures.fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard lock(m.dirty_mu);
      for (std::uint64_t c = offset / kChunk;
           c * kChunk < offset + std::max<std::uint64_t>(length, 1); ++c) {
        m.dirty.insert(c);
      }
    }
    if (!m.reported.exchange(true)) {
      context_.log("vdisk " + m.vdisk + ": mirror " + m.path + " failed (" + std::strerror(-err) +
                   "); the guest goes on, the mirror resyncs at the next flush");
    }
  }

  // Copies every out-of-sync chunk from the primary; 0 when the mirror matches, else -errno
  // (the chunks left stay marked).
  int resync(Mirror& m, v2p::Next& next) {
    {
      std::lock_guard lock(m.dirty_mu);
      if (m.dirty.empty()) return 0;
    }
    std::unique_lock order(m.order);
    std::vector<std::byte> buf(kChunk);
    const v2p::RequestContext ctx{};  // the filter's own I/O, not a guest request: untagged
    for (;;) {
      std::uint64_t c = 0;
      {
        std::lock_guard lock(m.dirty_mu);
        if (m.dirty.empty()) break;
        c = *m.dirty.begin();
      }
      const std::uint64_t off = c * kChunk;
      const std::uint64_t len = std::min(kChunk, next.size() - off);
      int rc = next.read(ctx, std::span(buf.data(), len), off);
      if (rc == 0) rc = copy_chunk(m.fd, std::span(buf.data(), len), off);
      if (rc != 0) return rc;
      std::lock_guard lock(m.dirty_mu);
      m.dirty.erase(c);
      m.resynced.fetch_add(1, std::memory_order_relaxed);
    }
    if (m.reported.exchange(false))
      context_.log("vdisk " + m.vdisk + ": mirror " + m.path + " back in sync");
    return 0;
  }

  v2p::FilterContext& context_;
  std::string pattern_;
};

}  // namespace

V2P_FILTER(MirrorFilter)
