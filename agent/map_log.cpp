#include "agent/map_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <limits>
#include <string>

#include "common/crc32c.hpp"
#include "common/error.hpp"
#include "common/frame.hpp"

namespace v2p::agent {
namespace {

enum class LogType : std::uint16_t { kChange = 1, kDeclare = 2, kBackend = 3, kDrop = 4 };

struct LogHeader {
  char magic[8];
  std::uint32_t version;
  std::uint32_t epoch;
};
static_assert(sizeof(LogHeader) == 16);

// One map change with what the change feed leaves out (last sighting, confidence), so replay
// rebuilds the extent exactly as the correlator had it.
struct LoggedChange {
  std::uint32_t vm, vdisk;
  std::uint64_t voffset, length, sector, generation, last_seen_ns;
  std::uint32_t device;
  float confidence;
  std::uint8_t kind;
  std::uint8_t pad[7];
};
static_assert(sizeof(LoggedChange) == 64);

struct LoggedVdisk {
  std::uint32_t vm, vdisk;
};

constexpr std::size_t kCrcBytes = sizeof(std::uint32_t);

void write_all(int fd, std::span<const std::byte> b, const std::string& what) {
  while (!b.empty()) {
    const auto n = ::write(fd, b.data(), b.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw system_error("cannot write " + what);
    }
    b = b.subspan(static_cast<std::size_t>(n));
  }
}

LogHeader header_of(std::uint32_t epoch) {
  LogHeader h{};
  std::memcpy(h.magic, kMapLogMagic, sizeof h.magic);
  h.version = kMapLogVersion;
  h.epoch = epoch;
  return h;
}

void apply_change(const LoggedChange& l, V2PMap& map) {
  const VdiskKey key{VmId{l.vm}, VdiskId{l.vdisk}};
  switch (static_cast<MapChangeKind>(l.kind)) {
    case MapChangeKind::kUnmapped:
      map.unmap(key, VirtualOffset{l.voffset}, l.length);
      return;
    case MapChangeKind::kMapped:
    case MapChangeKind::kRelocated: {
      const auto device = DeviceId::from_kernel(l.device);
      // map() evicts whoever else held those sectors, as the live write did; restore() then
      // puts the extent back with the generation the correlator had given it.
      map.map(key, Mapping{VirtualOffset{l.voffset}, l.length, device, PhysicalSector{l.sector},
                           l.last_seen_ns, l.confidence});
      map.restore(key,
                  MappedExtent{VirtualOffset{l.voffset}, l.length, device, PhysicalSector{l.sector},
                               l.generation, l.last_seen_ns, l.confidence});
      return;
    }
  }
  throw Error("unknown map change kind " + std::to_string(l.kind));
}

void apply(LogType type, std::span<const std::byte> payload, const MapLogSink& sink) {
  switch (type) {
    case LogType::kChange:
      apply_change(frame::decode_fixed<LoggedChange>(payload, "map change record"), sink.map);
      return;
    case LogType::kDeclare:
      sink.declare(decode_vdisk_declaration(payload));
      return;
    case LogType::kBackend:
      sink.backend(frame::decode_fixed<std::uint32_t>(payload, "backend record"));
      return;
    case LogType::kDrop: {
      const auto v = frame::decode_fixed<LoggedVdisk>(payload, "drop record");
      sink.map.unmap({VmId{v.vm}, VdiskId{v.vdisk}}, VirtualOffset{0},
                     std::numeric_limits<std::uint64_t>::max());
      return;
    }
  }
  throw Error("unknown record type " + std::to_string(static_cast<unsigned>(type)));
}

}  // namespace

MapLogReplay replay_map_log(const std::filesystem::path& path, std::uint32_t epoch,
                            const MapLogSink& sink) {
  MapLogReplay out;
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return out;
    throw system_error("cannot open " + path.string());
  }
  std::vector<std::byte> data;
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    throw system_error("cannot stat " + path.string(), err);
  }
  data.resize(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < data.size()) {
    const auto n = ::pread(fd, data.data() + got, data.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // shrank under us: what was read is all there is
    got += static_cast<std::size_t>(n);
  }
  data.resize(got);
  LogHeader h{};
  if (data.size() < sizeof h) {
    out.why = "log header is truncated";
  } else {
    std::memcpy(&h, data.data(), sizeof h);
    if (std::memcmp(h.magic, kMapLogMagic, sizeof h.magic) != 0 || h.version != kMapLogVersion) {
      out.why = "not a v2p map log (or an unsupported version)";
    }
  }
  std::size_t good = 0;
  if (out.why.empty()) {
    good = sizeof h;
    out.matched = h.epoch == epoch;
  }
  // Another epoch: the snapshot already holds these changes (crash between the snapshot's
  // rename and the log's rotation) or the snapshot was set aside; either way nothing applies.
  if (out.matched) {
    std::size_t pos = good;
    while (pos < data.size()) {
      const auto rest = std::span<const std::byte>(data).subspan(pos);
      frame::FrameHeader fh{};
      if (rest.size() < sizeof fh) {
        out.why = "torn record header";
        break;
      }
      std::memcpy(&fh, rest.data(), sizeof fh);
      // Bounds first: a length from the file is trusted only after this check and the CRC.
      if (fh.length > kMaxFramePayload) {
        out.why = "record length " + std::to_string(fh.length) + " is out of bounds";
        break;
      }
      const std::size_t total = sizeof fh + fh.length + kCrcBytes;
      if (rest.size() < total) {
        out.why = "torn record";
        break;
      }
      std::uint32_t crc;
      std::memcpy(&crc, rest.data() + sizeof fh + fh.length, sizeof crc);
      if (crc32c(rest.first(sizeof fh + fh.length)) != crc) {
        out.why = "record checksum mismatch";
        break;
      }
      try {
        apply(static_cast<LogType>(fh.type), rest.subspan(sizeof fh, fh.length), sink);
      } catch (const Error& e) {
        out.why = e.what();
        break;
      }
      ++out.records;
      pos += total;
      good = pos;
    }
  }
  if (out.matched && good < data.size()) {
    out.bad_tail = data.size() - good;
    // Cut the bad tail so the writer's next records follow the last good one: a record after
    // garbage would never be reached by the next replay.
    if (::ftruncate(fd, static_cast<off_t>(good)) != 0) {
      const int err = errno;
      ::close(fd);
      throw system_error("cannot truncate " + path.string(), err);
    }
  }
  ::close(fd);
  return out;
}

MapLogWriter::MapLogWriter(std::filesystem::path path, std::uint32_t epoch, bool append)
    : path_(std::move(path)), epoch_(epoch) {
  const int fd = append ? ::open(path_.c_str(), O_RDWR | O_CLOEXEC) : -1;
  if (fd >= 0) {
    LogHeader h{};
    if (::pread(fd, &h, sizeof h, 0) == sizeof h &&
        std::memcmp(h.magic, kMapLogMagic, sizeof h.magic) == 0 && h.version == kMapLogVersion &&
        h.epoch == epoch && ::lseek(fd, 0, SEEK_END) >= static_cast<off_t>(sizeof h)) {
      fd_ = fd;
      return;
    }
    ::close(fd);
  }
  open_fresh(epoch);
}

MapLogWriter::~MapLogWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void MapLogWriter::open_fresh(std::uint32_t epoch) {
  const auto tmp = path_.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw system_error("cannot create " + tmp);
  try {
    write_all(fd, frame::bytes_of(header_of(epoch)), tmp);
    if (::fdatasync(fd) != 0) throw system_error("cannot sync " + tmp);
    std::filesystem::rename(tmp, path_);
  } catch (...) {
    ::close(fd);
    throw;
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  epoch_ = epoch;
}

void MapLogWriter::put(std::uint16_t type, std::span<const std::byte> payload) {
  const frame::FrameHeader fh{type, 0, static_cast<std::uint32_t>(payload.size())};
  const auto start = buf_.size();
  const auto h = frame::bytes_of(fh);
  buf_.insert(buf_.end(), h.begin(), h.end());
  buf_.insert(buf_.end(), payload.begin(), payload.end());
  const std::uint32_t crc = crc32c(std::span<const std::byte>(buf_).subspan(start));
  const auto c = frame::bytes_of(crc);
  buf_.insert(buf_.end(), c.begin(), c.end());
}

void MapLogWriter::change(const MapChange& c, std::uint64_t last_seen_ns, float confidence) {
  LoggedChange l{};
  l.vm = c.vdisk.vm.value();
  l.vdisk = c.vdisk.vdisk.value();
  l.voffset = c.voffset.value();
  l.length = c.length;
  l.sector = c.sector.value();
  l.generation = c.generation;
  l.last_seen_ns = last_seen_ns;
  l.device = c.device.kernel();
  l.confidence = confidence;
  l.kind = static_cast<std::uint8_t>(c.kind);
  put(static_cast<std::uint16_t>(LogType::kChange), frame::bytes_of(l));
}

void MapLogWriter::declare(const VdiskDeclaration& d) {
  put(static_cast<std::uint16_t>(LogType::kDeclare), encode_vdisk_declaration(d));
}

void MapLogWriter::backend(std::uint32_t tgid) {
  put(static_cast<std::uint16_t>(LogType::kBackend), frame::bytes_of(tgid));
}

void MapLogWriter::drop(VdiskKey vdisk) {
  put(static_cast<std::uint16_t>(LogType::kDrop),
      frame::bytes_of(LoggedVdisk{vdisk.vm.value(), vdisk.vdisk.value()}));
}

void MapLogWriter::flush(bool durable) {
  // A rotation that failed after its snapshot was saved: records appended to the old log would
  // be skipped by replay (its epoch is behind the snapshot's), so none go there.
  if (stale_) {
    open_fresh(epoch_);
    stale_ = false;
  }
  if (!buf_.empty()) {
    const off_t end = ::lseek(fd_, 0, SEEK_CUR);
    try {
      write_all(fd_, buf_, path_.string());
    } catch (const Error&) {
      // Cut a partial batch: a retry appends it whole, never after a torn record.
      if (end >= 0 && ::ftruncate(fd_, end) == 0) ::lseek(fd_, end, SEEK_SET);
      throw;
    }
    buf_.clear();
  }
  if (durable && ::fdatasync(fd_) != 0) throw system_error("cannot sync " + path_.string());
}

void MapLogWriter::rotate(std::uint32_t epoch) {
  buf_.clear();
  epoch_ = epoch;
  stale_ = true;
  open_fresh(epoch);
  stale_ = false;
}

}  // namespace v2p::agent
