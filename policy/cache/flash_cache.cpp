#include "policy/cache/flash_cache.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "common/crc32c.hpp"
#include "common/error.hpp"
#include "common/host_layout/aligned_buffer.hpp"
#include "policy/cache/cache_stage.hpp"

namespace v2p::cache {

using host_layout::AlignedBuffer;
namespace {

int pread_full(int fd, std::byte* buf, std::uint64_t len, std::uint64_t off) {
  std::uint64_t done = 0;
  while (done < len) {
    const ssize_t n = ::pread(fd, buf + done, len - done, static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) {  // past the end of a truncated file: zeros, which fail every check
      std::memset(buf + done, 0, len - done);
      return 0;
    }
    done += static_cast<std::uint64_t>(n);
  }
  return 0;
}

int pwrite_full(int fd, const std::byte* buf, std::uint64_t len, std::uint64_t off) {
  std::uint64_t done = 0;
  while (done < len) {
    const ssize_t n = ::pwrite(fd, buf + done, len - done, static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) return -ENOSPC;
    done += static_cast<std::uint64_t>(n);
  }
  return 0;
}

std::uint64_t existing_size(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  if (S_ISREG(st.st_mode)) return static_cast<std::uint64_t>(st.st_size);
  if (S_ISBLK(st.st_mode)) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    std::uint64_t bytes = 0;
    if (::ioctl(fd, BLKGETSIZE64, &bytes) != 0) bytes = 0;
    ::close(fd);
    return bytes;
  }
  return 0;
}

Geometry initial_geometry(const FlashCacheOptions& o) {
  if (o.file.empty()) throw Error("the cache needs a file or device (--cache PATH)");
  const std::uint64_t size = o.size_bytes != 0 ? o.size_bytes : existing_size(o.file);
  if (size == 0)
    throw Error("give the cache a size (--cache-size BYTES): " + o.file.string() +
                " does not exist or is empty");
  return plan_geometry(size, o.block_bytes);
}

}  // namespace

WriteMode parse_write_mode(std::string_view text) {
  if (text == "write-through") return WriteMode::kWriteThrough;
  if (text == "write-around") return WriteMode::kWriteAround;
  throw Error("cache mode must be write-through or write-around, not '" + std::string(text) + "'");
}

FlashCache::FlashCache(FlashCacheOptions options)
    : opts_(std::move(options)),
      geometry_(initial_geometry(opts_)),
      dir_(CacheDirectory::Options{geometry_.slots, geometry_.block_bytes, opts_.filter,
                                   opts_.min_frequency}),
      admit_(opts_.admit ? std::make_shared<const AdmitHook>(opts_.admit) : nullptr) {
  open_file();
  try {
    restore();
    for (const auto& [vm, bytes] : opts_.quotas) dir_.set_quota(dir_.vm(vm), bytes);
    for (const auto& [vm, prio] : opts_.priorities) dir_.set_priority(dir_.vm(vm), prio);
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

FlashCache::~FlashCache() {
  try {
    close();
  } catch (...) {  // the next open finds the file unclean and starts empty: safe
  }
}

void FlashCache::open_file() {
  const int base = O_RDWR | O_CREAT | O_CLOEXEC;
  if (opts_.direct_io) fd_ = ::open(opts_.file.c_str(), base | O_DIRECT, 0600);
  if (fd_ < 0) fd_ = ::open(opts_.file.c_str(), base, 0600);  // tmpfs: no O_DIRECT
  if (fd_ < 0) throw system_error("cannot open the cache file " + opts_.file.string());
  struct stat st {};
  if (::fstat(fd_, &st) != 0) throw system_error("cannot stat " + opts_.file.string());
  if (S_ISREG(st.st_mode)) {
    // Exactly the planned size: a file truncated since last time grows back with zeros (which
    // no header check accepts).
    if (static_cast<std::uint64_t>(st.st_size) != geometry_.file_bytes() &&
        ::ftruncate(fd_, static_cast<off_t>(geometry_.file_bytes())) != 0) {
      const auto e = system_error("cannot size the cache file " + opts_.file.string());
      ::close(fd_);
      throw e;
    }
  } else if (!S_ISBLK(st.st_mode)) {
    ::close(fd_);
    throw Error(opts_.file.string() + " is neither a regular file nor a block device");
  }
}

void FlashCache::restore() {
  AlignedBuffer buf(std::max<std::uint64_t>(kHeaderBytes, geometry_.bitmap_bytes));
  check_errno_result(pread_full(fd_, buf.data(), kHeaderBytes, 0),
                     "cannot read the cache superblock of " + opts_.file.string());
  const auto sb =
      decode_superblock(std::span<const std::byte, kHeaderBytes>(buf.data(), kHeaderBytes));
  if (sb && sb->geometry == geometry_ && sb->clean && opts_.persistent) {
    restore_.clean = true;
    check_errno_result(pread_full(fd_, buf.data(), geometry_.bitmap_bytes, kHeaderBytes),
                       "cannot read the cache bitmap of " + opts_.file.string());
    std::vector<std::byte> bitmap(buf.data(), buf.data() + geometry_.bitmap_bytes);
    if (crc32c(bitmap) == sb->bitmap_crc) {
      dir_.set_next_generation(sb->next_generation);
      AlignedBuffer header(kHeaderBytes);
      for (std::uint32_t i = 0; i < geometry_.slots; ++i) {
        if ((std::to_integer<unsigned>(bitmap[i / 8]) & (1U << (i % 8))) == 0) continue;
        const CacheSlot slot(i);
        const auto h =
            pread_full(fd_, header.data(), kHeaderBytes, geometry_.slot_offset(slot)) == 0
                ? decode_entry(
                      std::span<const std::byte, kHeaderBytes>(header.data(), kHeaderBytes),
                      geometry_.block_bytes)
                : std::nullopt;
        if (h && h->slot == slot && dir_.restore(slot, h->key, h->vm, h->length, h->generation)) {
          ++restore_.restored;
        } else {
          ++restore_.discarded;
        }
      }
    }
  }
  // From now on the file is unclean until close(): a crash leaves nothing that will be trusted.
  Superblock open_sb;
  open_sb.geometry = geometry_;
  open_sb.clean = false;
  open_sb.next_generation = dir_.next_generation();
  encode_superblock(open_sb, std::span<std::byte, kHeaderBytes>(buf.data(), kHeaderBytes));
  check_errno_result(pwrite_full(fd_, buf.data(), kHeaderBytes, 0),
                     "cannot write the cache superblock of " + opts_.file.string());
  if (::fdatasync(fd_) != 0) throw system_error("cannot sync " + opts_.file.string());
}

void FlashCache::close() {
  std::lock_guard lock(mu_);
  if (closed_) return;
  closed_ = true;
  if (!opts_.persistent) {  // left unclean on purpose: the next open starts empty
    ::close(fd_);
    fd_ = -1;
    return;
  }
  AlignedBuffer bitmap(geometry_.bitmap_bytes);
  std::memset(bitmap.data(), 0, geometry_.bitmap_bytes);
  for (const CacheSlot s : dir_.valid_slots()) {
    auto& byte = bitmap.data()[s.value() / 8];
    byte |= std::byte(1U << (s.value() % 8));
  }
  Superblock sb;
  sb.geometry = geometry_;
  sb.clean = true;
  sb.next_generation = dir_.next_generation();
  sb.bitmap_crc = crc32c(std::span<const std::byte>(bitmap.data(), geometry_.bitmap_bytes));
  AlignedBuffer super(kHeaderBytes);
  encode_superblock(sb, std::span<std::byte, kHeaderBytes>(super.data(), kHeaderBytes));
  // Bitmap first and durable, then the superblock that vouches for it.
  const bool ok = pwrite_full(fd_, bitmap.data(), geometry_.bitmap_bytes, kHeaderBytes) == 0 &&
                  ::fdatasync(fd_) == 0 && pwrite_full(fd_, super.data(), kHeaderBytes, 0) == 0 &&
                  ::fdatasync(fd_) == 0;
  ::close(fd_);
  fd_ = -1;
  if (!ok) throw Error("could not record the cache index in " + opts_.file.string());
}

void FlashCache::set_admit_hook(AdmitHook hook) {
  std::lock_guard lock(mu_);
  admit_ = hook ? std::make_shared<const AdmitHook>(std::move(hook)) : nullptr;
}

int FlashCache::read_slot(CacheSlot slot, std::byte* buf) const {
  return pread_full(fd_, buf, kHeaderBytes + geometry_.block_bytes, geometry_.slot_offset(slot));
}

int FlashCache::write_slot(CacheSlot slot, const std::byte* buf) const {
  return pwrite_full(fd_, buf, kHeaderBytes + geometry_.block_bytes, geometry_.slot_offset(slot));
}

void FlashCache::attach(const std::string& vdisk, CacheStage* stage) {
  std::lock_guard lock(mu_);
  stages_.emplace(vdisk, stage);
}

void FlashCache::detach(const std::string& vdisk, CacheStage* stage) {
  std::lock_guard lock(mu_);
  for (auto [it, end] = stages_.equal_range(vdisk); it != end; ++it) {
    if (it->second == stage) {
      stages_.erase(it);
      return;
    }
  }
}

std::uint64_t FlashCache::capacity_bytes() const {
  return std::uint64_t{geometry_.slots} * geometry_.block_bytes;
}

std::uint64_t FlashCache::entries() const {
  std::lock_guard lock(mu_);
  return dir_.entries();
}

std::vector<std::string> FlashCache::vms() const {
  std::lock_guard lock(mu_);
  return dir_.vm_names();
}

std::optional<CacheVmStats> FlashCache::vm_stats(std::string_view vm) const {
  std::lock_guard lock(mu_);
  const auto id = dir_.find_vm(vm);
  if (!id) return std::nullopt;
  return dir_.stats(*id);
}

void FlashCache::set_quota(std::string_view vm, std::uint64_t bytes) {
  std::lock_guard lock(mu_);
  dir_.set_quota(dir_.vm(vm), bytes);
}

void FlashCache::set_priority(std::string_view vm, int priority) {
  std::lock_guard lock(mu_);
  dir_.set_priority(dir_.vm(vm), priority);
}

std::uint64_t FlashCache::invalidate(std::string_view vdisk, VirtualOffset offset,
                                     std::uint64_t length) {
  std::vector<CacheStage*> targets;
  {
    std::lock_guard lock(mu_);
    for (auto [it, end] = stages_.equal_range(std::string(vdisk)); it != end; ++it)
      targets.push_back(it->second);
  }
  std::uint64_t n = 0;
  for (auto* s : targets) n += s->invalidate(offset.value(), length);
  return n;
}

std::vector<CacheKey> FlashCache::keys() const {
  std::lock_guard lock(mu_);
  return dir_.keys();
}

std::optional<std::string> FlashCache::check() const {
  std::lock_guard lock(mu_);
  return dir_.check();
}

}  // namespace v2p::cache
