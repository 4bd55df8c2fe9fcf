#include "policy/tier/tier_journal.hpp"

#include <fcntl.h>
#include <fmt/core.h>
#include <unistd.h>

#include <array>
#include <bit>
#include <cerrno>
#include <cstring>
#include <span>
#include <string>
#include <utility>

#include "common/crc32c.hpp"
#include "common/error.hpp"

namespace v2p::tier {
namespace {

static_assert(std::endian::native == std::endian::little, "the journal is little-endian on disk");

constexpr std::uint32_t kMagic = 0x54503256;  // "V2PT"
constexpr std::uint16_t kVersion = 1;
constexpr std::uint8_t kHeader = 1;
constexpr std::uint8_t kMove = 2;

// One record, exactly as on disk.
struct RawRecord {
  std::uint32_t magic;
  std::uint16_t version;
  std::uint8_t kind;
  std::uint8_t tier;
  std::uint64_t seq;
  std::uint64_t a;  // header: extent_bytes; move: extent
  std::uint64_t b;  // header: extents;      move: slot
  std::uint64_t c;  // header: fast_slots;   move: 0
  std::uint32_t data_crc;
  std::uint8_t reserved[16];
  std::uint32_t crc;  // CRC-32C of the 60 bytes before it
};
static_assert(sizeof(RawRecord) == 64);
constexpr std::size_t kRecord = sizeof(RawRecord);

std::uint32_t record_crc(const RawRecord& r) {
  return crc32c(std::as_bytes(std::span(&r, 1)).first(offsetof(RawRecord, crc)));
}

RawRecord seal(RawRecord r) {
  r.magic = kMagic;
  r.version = kVersion;
  r.crc = record_crc(r);
  return r;
}

RawRecord header_record(const Geometry& g) {
  RawRecord r{};
  r.kind = kHeader;
  r.a = g.extent_bytes;
  r.b = g.extents;
  r.c = g.fast_slots;
  return seal(r);
}

RawRecord move_record(std::uint64_t seq, ExtentIndex e, Placement to, std::uint32_t data_crc) {
  RawRecord r{};
  r.kind = kMove;
  r.tier = static_cast<std::uint8_t>(to.tier);
  r.seq = seq;
  r.a = e.value();
  r.b = to.tier == Tier::kFast ? to.slot.value() : 0;
  r.data_crc = data_crc;
  return seal(r);
}

bool valid(const RawRecord& r) {
  return r.magic == kMagic && r.version == kVersion && r.crc == record_crc(r);
}

int write_all(int fd, const void* data, std::size_t len, std::uint64_t off) noexcept {
  const auto* p = static_cast<const char*>(data);
  while (len > 0) {
    const ssize_t n = ::pwrite(fd, p, len, static_cast<off_t>(off));
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) return -EIO;
    p += n;
    len -= static_cast<std::size_t>(n);
    off += static_cast<std::uint64_t>(n);
  }
  return 0;
}

std::string read_whole(int fd) {
  std::string data;
  std::array<char, 1 << 16> buf;
  std::uint64_t off = 0;
  for (;;) {
    const ssize_t n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(off));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw system_error("cannot read the tier journal");
    }
    if (n == 0) break;
    data.append(buf.data(), static_cast<std::size_t>(n));
    off += static_cast<std::uint64_t>(n);
  }
  return data;
}

struct Parsed {
  bool has_header = false;
  Geometry geometry;
  RemapTable table{Geometry{}};
  ReplayReport report;
  std::uint64_t valid_bytes = 0;
};

// Header first, then moves in sequence until the first record that is not valid: the tail.
Parsed parse(const std::string& data, const std::filesystem::path& path) {
  Parsed p;
  if (data.size() < kRecord) {
    p.report.dropped_bytes = data.size();
    return p;
  }
  RawRecord r;
  std::memcpy(&r, data.data(), kRecord);
  if (!valid(r) || r.kind != kHeader) {
    throw Error(fmt::format(
        "{} is not a v2p tier journal (bad header); move it away to start with every extent on "
        "the slow tier",
        path.string()));
  }
  p.has_header = true;
  p.geometry = Geometry{r.a, r.b, r.c};
  p.table = RemapTable(p.geometry);
  std::size_t off = kRecord;
  std::uint64_t seq = 1;
  for (; off + kRecord <= data.size(); off += kRecord) {
    std::memcpy(&r, data.data() + off, kRecord);
    if (!valid(r) || r.kind != kMove || r.seq != seq) break;
    const Placement to{r.tier == 1 ? Tier::kFast : Tier::kSlow, FastSlot(r.b)};
    if (r.tier > 1 || !p.table.place(ExtentIndex(r.a), to)) {
      throw Error(fmt::format(
          "{}: record {} names an impossible placement (extent {}, slot {}); the journal is "
          "corrupt",
          path.string(), r.seq, r.a, r.b));
    }
    ++seq;
    ++p.report.records;
  }
  p.valid_bytes = off;
  p.report.dropped_bytes = data.size() - off;
  p.report.next_seq = seq;
  return p;
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  [[nodiscard]] int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

int fsync_dir(const std::filesystem::path& file) noexcept {
  const auto dir = file.parent_path().empty() ? std::filesystem::path(".") : file.parent_path();
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  const int rc = ::fsync(fd) == 0 ? 0 : -errno;
  ::close(fd);
  return rc;
}

}  // namespace

RemapTable::RemapTable(Geometry geometry)
    : geometry_(geometry), entries_(geometry.extents), slot_owner_(geometry.fast_slots, 0) {}

std::optional<ExtentIndex> RemapTable::owner(FastSlot s) const noexcept {
  if (s.value() >= slot_owner_.size() || slot_owner_[s.value()] == 0) return std::nullopt;
  return ExtentIndex(slot_owner_[s.value()] - 1);
}

std::optional<FastSlot> RemapTable::free_slot() const noexcept {
  for (std::uint64_t s = 0; s < slot_owner_.size(); ++s) {
    if (slot_owner_[s] == 0) return FastSlot(s);
  }
  return std::nullopt;
}

bool RemapTable::place(ExtentIndex e, Placement p) noexcept {
  if (e.value() >= entries_.size()) return false;
  if (p.tier == Tier::kFast) {
    if (p.slot.value() >= slot_owner_.size()) return false;
    const auto o = slot_owner_[p.slot.value()];
    if (o != 0 && o != e.value() + 1) return false;
  } else {
    p.slot = FastSlot(0);
  }
  auto& cur = entries_[e.value()];
  if (cur.tier == Tier::kFast) {
    slot_owner_[cur.slot.value()] = 0;
    --fast_count_;
  }
  if (p.tier == Tier::kFast) {
    slot_owner_[p.slot.value()] = e.value() + 1;
    ++fast_count_;
  }
  cur = p;
  return true;
}

std::vector<ExtentIndex> RemapTable::fast_extents() const {
  std::vector<ExtentIndex> out;
  out.reserve(fast_count_);
  for (std::uint64_t e = 0; e < entries_.size(); ++e) {
    if (entries_[e].tier == Tier::kFast) out.emplace_back(e);
  }
  return out;
}

JournalContents read_journal(const std::filesystem::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw system_error("cannot open the tier journal " + path.string());
  auto p = parse(read_whole(fd.get()), path);
  if (!p.has_header) throw Error(path.string() + " has no tier journal header yet");
  return JournalContents{p.geometry, std::move(p.table), p.report};
}

TierJournal::TierJournal(std::filesystem::path path, Geometry geometry)
    : path_(std::move(path)), geometry_(geometry), table_(geometry) {
  if (geometry.extent_bytes == 0 || geometry.extents == 0) {
    throw Error("tier geometry: the extent size and the vdisk size must not be zero");
  }
  Fd fd(::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (fd.get() < 0) throw system_error("cannot open the tier journal " + path_.string());
  const auto p = parse(read_whole(fd.get()), path_);
  if (p.has_header) {
    if (!(p.geometry == geometry)) {
      throw Error(fmt::format(
          "{} was written for extents of {} B, {} extents, {} fast slots; now {} B, {}, {}: keep "
          "the same --tier-extent, image and --tier-fast-size, or remove the journal and the fast "
          "file to start over (everything is then read from the slow image, whose extents the "
          "journal placed on the fast tier are stale)",
          path_.string(), p.geometry.extent_bytes, p.geometry.extents, p.geometry.fast_slots,
          geometry.extent_bytes, geometry.extents, geometry.fast_slots));
    }
    table_ = p.table;
    replay_ = p.report;
  }
  fd_ = fd.release();
  next_seq_ = replay_.next_seq;
  // A fresh journal, or one to be cut to its valid records: write it anew, compacted.
  const int rc = compact();
  if (rc < 0) throw system_error("cannot rewrite the tier journal " + path_.string(), -rc);
}

TierJournal::~TierJournal() {
  if (fd_ >= 0) ::close(fd_);
}

int TierJournal::commit(ExtentIndex extent, Placement to, std::uint32_t data_crc) noexcept {
  if (broken_) return -EIO;
  RemapTable next = table_;
  if (!next.place(extent, to)) return -EINVAL;
  const RawRecord r = move_record(next_seq_, extent, to, data_crc);
  int rc = write_all(fd_, &r, kRecord, size_);
  if (rc == 0 && ::fdatasync(fd_) != 0) rc = -errno;
  if (rc < 0) {
    // Not committed: cut off whatever part of the record reached the file, so the next append
    // does not land behind a torn one. Replay would stop at it anyway; this keeps later commits.
    if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0 || ::fdatasync(fd_) != 0) broken_ = true;
    return rc;
  }
  size_ += kRecord;
  ++next_seq_;
  ++since_compact_;
  table_.place(extent, to);
  return 0;
}

int TierJournal::compact() noexcept {
  auto tmp = path_;
  tmp += ".new";
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (fd.get() < 0) return -errno;
  std::vector<RawRecord> recs;
  recs.push_back(header_record(geometry_));
  std::uint64_t seq = 1;
  for (const auto e : table_.fast_extents()) recs.push_back(move_record(seq++, e, table_.at(e), 0));
  int rc = write_all(fd.get(), recs.data(), recs.size() * kRecord, 0);
  if (rc == 0 && ::fsync(fd.get()) != 0) rc = -errno;
  if (rc == 0 && ::rename(tmp.c_str(), path_.c_str()) != 0) rc = -errno;
  if (rc < 0) {
    ::unlink(tmp.c_str());
    return rc;
  }
  rc = fsync_dir(path_);
  if (fd_ >= 0) ::close(fd_);
  // The renamed file is the journal now; append to it through a read-write descriptor.
  fd_ = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
  if (fd_ < 0) {
    broken_ = true;
    return -errno;
  }
  size_ = recs.size() * kRecord;
  next_seq_ = seq;
  since_compact_ = 0;
  broken_ = false;
  return rc;
}

}  // namespace v2p::tier
