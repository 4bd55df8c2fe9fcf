#include "ec/metadata_log.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.hpp"

namespace v2p::ec {
namespace {

void write_all(int fd, std::span<const std::uint8_t> bytes, std::uint64_t offset,
               const std::string& what) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n =
        ::pwrite(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw system_error("cannot write " + what);
    done += static_cast<std::size_t>(n);
  }
}

std::vector<std::uint8_t> read_whole(int fd, const std::string& what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw system_error("cannot stat " + what);
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(st.st_size));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n =
        ::pread(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw system_error("cannot read " + what);
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  bytes.resize(done);
  return bytes;
}

}  // namespace

void fsync_directory(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw system_error("cannot open directory " + dir.string());
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) throw system_error("cannot fsync directory " + dir.string(), err);
}

MetadataLog::MetadataLog(const std::filesystem::path& dir, std::uint64_t new_pool_id) {
  std::filesystem::create_directories(dir);
  const auto path = dir / "ec.log";
  const std::string what = path.string();
  if (!std::filesystem::exists(path)) {
    // A new log appears complete or not at all: header written to a temporary, then renamed.
    const auto tmp = dir / "ec.log.new";
    const int t = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (t < 0) throw system_error("cannot create " + tmp.string());
    try {
      write_all(t, encode_log_header(new_pool_id), 0, tmp.string());
      if (::fdatasync(t) != 0) throw system_error("cannot fsync " + tmp.string());
    } catch (...) {
      ::close(t);
      throw;
    }
    ::close(t);
    std::filesystem::rename(tmp, path);
    fsync_directory(dir);
    created_ = true;
  }
  fd_ = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd_ < 0) throw system_error("cannot open " + what);
  try {
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      throw Error(what + " is in use by another process (one pool, one owner)");
    }
    auto bytes = read_whole(fd_, what);
    auto parsed = parse_log(bytes);
    if (!parsed.ok()) throw Error(what + ": " + parsed.error());
    pool_id_ = parsed.value().pool_id;
    replayed_ = std::move(parsed.value().records);
    size_ = parsed.value().valid_bytes;
    if (size_ < bytes.size()) {
      // Never acknowledged (its fdatasync did not return): cut it so appends follow valid bytes.
      dropped_tail_ = parsed.value().tail_problem + ", " + std::to_string(bytes.size() - size_) +
                      " bytes dropped";
      if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0 || ::fdatasync(fd_) != 0) {
        throw system_error("cannot cut the torn tail of " + what);
      }
    }
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

MetadataLog::~MetadataLog() {
  if (fd_ >= 0) ::close(fd_);
}

void MetadataLog::append(const LogRecord& record) {
  const auto bytes = encode_log_record(record);
  write_all(fd_, bytes, size_, "the ec metadata log");
  if (::fdatasync(fd_) != 0) throw system_error("cannot fsync the ec metadata log");
  size_ += bytes.size();
}

}  // namespace v2p::ec
