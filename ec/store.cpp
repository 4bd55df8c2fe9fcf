#include "ec/store.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <fmt/core.h>

#include <cstdio>
#include <cstring>
#include <fstream>

#include "common/crc32c.hpp"
#include "common/error.hpp"
#include "ec/metadata_log.hpp"

namespace v2p::ec {
namespace {

namespace fs = std::filesystem;

constexpr const char* kIdentityFile = "v2p-ec-store";
constexpr const char* kChunkDir = "chunks";
constexpr const char* kTmpSuffix = ".tmp";

std::string identity_text(std::uint64_t pool_id, std::uint32_t id) {
  return fmt::format("v2p-ec-store 1\npool {:016x}\nstore {}\n", pool_id, id);
}

// Closes an fd on every path out.
struct Fd {
  int fd;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

bool pread_all(int fd, std::uint8_t* buf, std::size_t len, std::uint64_t off) {
  std::size_t done = 0;
  while (done < len) {
    const ssize_t n = ::pread(fd, buf + done, len - done, static_cast<off_t>(off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

// Opens the chunk and checks its header against what the metadata says it must be.
Result<int> open_checked(const fs::path& path, const ChunkExpect& e) {
  using R = Result<int>;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return R::failure(errno_text(path.string()));
  std::uint8_t head[kChunkHeaderSize];
  if (!pread_all(fd, head, sizeof head, 0)) {
    ::close(fd);
    return R::failure(path.string() + ": chunk header is truncated");
  }
  auto h = parse_chunk_header(head);
  std::string why;
  if (!h.ok()) {
    why = h.error();
  } else if (h.value().pool_id != e.pool_id || h.value().container_id != e.container_id ||
             h.value().nonce != e.nonce || h.value().index != e.index || h.value().k != e.k ||
             h.value().m != e.m || h.value().payload_len != e.chunk_len) {
    why = "chunk header does not match the metadata (stale or misplaced chunk)";
  }
  if (!why.empty()) {
    ::close(fd);
    return R::failure(path.string() + ": " + why);
  }
  return fd;
}

std::uint32_t header_payload_crc(int fd) {
  std::uint8_t head[kChunkHeaderSize];
  if (!pread_all(fd, head, sizeof head, 0)) return 0;
  auto h = parse_chunk_header(head);
  return h.ok() ? h.value().payload_crc : 0;
}

bool probe_identity_present(const fs::path& root) {
  std::error_code ec;
  return fs::exists(root / kIdentityFile, ec);
}

}  // namespace

const char* to_string(Store::State s) noexcept {
  switch (s) {
    case Store::State::kOnline:
      return "online";
    case Store::State::kMissing:
      return "missing (directory absent)";
    case Store::State::kNoIdentity:
      return "no identity (unmounted, or an empty replacement to rebuild)";
    case Store::State::kForeign:
      return "foreign (identity names another pool or store id)";
  }
  return "?";
}

fs::path Store::chunk_path(std::uint64_t container_id, std::uint8_t index) const {
  return root_ / kChunkDir / fmt::format("{:016x}.{:02}", container_id, index);
}

Store::State Store::probe(std::uint64_t pool_id) const {
  if (backend_) return backend_->probe(pool_id);
  std::error_code ec;
  if (!fs::is_directory(root_, ec)) return State::kMissing;
  std::ifstream in(root_ / kIdentityFile);
  if (!in) return State::kNoIdentity;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return text == identity_text(pool_id, id_) ? State::kOnline : State::kForeign;
}

void Store::adopt(std::uint64_t pool_id) const {
  if (backend_) return backend_->adopt(pool_id);
  std::error_code ec;
  if (!fs::is_directory(root_, ec)) {
    throw Error("store " + std::to_string(id_) + ": " + root_.string() + " is not a directory");
  }
  for (const auto& e : fs::directory_iterator(root_)) {
    const auto name = e.path().filename().string();
    // lost+found, and what an adoption that crashed half-way left behind, are fine.
    const bool leftover = name == std::string(kIdentityFile) + kTmpSuffix ||
                          (name == kChunkDir && fs::is_empty(e.path()));
    if (name != "lost+found" && !leftover) {
      throw Error("store " + std::to_string(id_) + ": " + root_.string() + " is not empty (holds " +
                  name + "); give an empty directory");
    }
  }
  fs::create_directories(root_ / kChunkDir);
  const auto tmp = root_ / (std::string(kIdentityFile) + kTmpSuffix);
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << identity_text(pool_id, id_);
    if (!out.flush()) throw Error("cannot write " + tmp.string());
  }
  {
    Fd f(::open(tmp.c_str(), O_RDONLY | O_CLOEXEC));
    if (f.fd < 0 || ::fsync(f.fd) != 0) throw system_error("cannot fsync " + tmp.string());
  }
  fs::rename(tmp, root_ / kIdentityFile);
  fsync_directory(root_);
}

Result<bool> Store::write_chunk(const ChunkHeader& header,
                                std::span<const std::uint8_t> payload) const {
  if (backend_) return backend_->write_chunk(header, payload);
  using R = Result<bool>;
  const auto path = chunk_path(header.container_id, header.index);
  const auto tmp = fs::path(path.string() + kTmpSuffix);
  const auto head = encode_chunk_header(header);
  {
    Fd f(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (f.fd < 0 && errno == ENOENT && probe_identity_present(root_)) {
      // The chunk directory was lost but the store is there: recreate it, never the root.
      std::error_code ec;
      fs::create_directory(root_ / kChunkDir, ec);
      f.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    }
    if (f.fd < 0)
      return R::failure(errno_text("store " + std::to_string(id_) + ": " + tmp.string()));
    iovec iov[2] = {{const_cast<std::uint8_t*>(head.data()), head.size()},
                    {const_cast<std::uint8_t*>(payload.data()), payload.size()}};
    const std::size_t total = head.size() + payload.size();
    const ssize_t n = ::pwritev(f.fd, iov, 2, 0);
    // A short pwritev to a regular file means the file system is full or failing.
    if (n != static_cast<ssize_t>(total)) {
      const std::string why = n < 0 ? std::strerror(errno) : "short write";
      ::unlink(tmp.c_str());
      return R::failure("store " + std::to_string(id_) + ": " + tmp.string() + ": " + why);
    }
    if (::fdatasync(f.fd) != 0) {
      const std::string why = errno_text("fdatasync " + tmp.string());
      ::unlink(tmp.c_str());
      return R::failure("store " + std::to_string(id_) + ": " + why);
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return R::failure(errno_text("store " + std::to_string(id_) + ": rename " + tmp.string()));
  }
  try {
    fsync_directory(path.parent_path());
  } catch (const Error& e) {
    return R::failure("store " + std::to_string(id_) + ": " + e.what());
  }
  return true;
}

Result<std::vector<std::uint8_t>> Store::read_chunk(const ChunkExpect& e) const {
  if (backend_) return backend_->read_chunk(e);
  using R = Result<std::vector<std::uint8_t>>;
  const auto path = chunk_path(e.container_id, e.index);
  auto opened = open_checked(path, e);
  if (!opened.ok()) return R::failure(opened.error());
  Fd f(opened.value());
  std::vector<std::uint8_t> payload(e.chunk_len);
  if (!pread_all(f.fd, payload.data(), payload.size(), kChunkHeaderSize)) {
    return R::failure(path.string() + ": chunk payload is truncated");
  }
  if (crc32c(payload) != header_payload_crc(f.fd)) {
    return R::failure(path.string() + ": chunk payload checksum mismatch");
  }
  return payload;
}

Result<std::vector<std::uint8_t>> Store::read_range(const ChunkExpect& e, std::uint32_t offset,
                                                    std::uint32_t len) const {
  if (backend_) return backend_->read_range(e, offset, len);
  using R = Result<std::vector<std::uint8_t>>;
  const auto path = chunk_path(e.container_id, e.index);
  if (std::uint64_t{offset} + len > e.chunk_len) return R::failure("range beyond the chunk");
  auto opened = open_checked(path, e);
  if (!opened.ok()) return R::failure(opened.error());
  Fd f(opened.value());
  std::vector<std::uint8_t> bytes(len);
  if (!pread_all(f.fd, bytes.data(), len, kChunkHeaderSize + offset)) {
    return R::failure(path.string() + ": chunk payload is truncated");
  }
  return bytes;
}

bool Store::has_chunk(const ChunkExpect& e) const {
  if (backend_) return backend_->has_chunk(e);
  struct stat st {};
  return ::stat(chunk_path(e.container_id, e.index).c_str(), &st) == 0 &&
         static_cast<std::uint64_t>(st.st_size) == kChunkHeaderSize + e.chunk_len;
}

void Store::remove_chunk(std::uint64_t container_id, std::uint8_t index) const noexcept {
  if (backend_) return backend_->remove_chunk(container_id, index);
  ::unlink(chunk_path(container_id, index).c_str());
}

std::vector<StoredChunk> Store::list_chunks() const {
  if (backend_) return backend_->list_chunks();
  std::vector<StoredChunk> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root_ / kChunkDir, ec)) {
    unsigned long long id = 0;
    unsigned idx = 0;
    char extra = 0;
    const auto name = e.path().filename().string();
    if (name.size() == 19 && std::sscanf(name.c_str(), "%16llx.%2u%c", &id, &idx, &extra) == 2 &&
        idx < 256) {
      out.push_back({id, static_cast<std::uint8_t>(idx), e.path()});
    }
  }
  return out;
}

std::vector<fs::path> Store::list_temporaries() const {
  if (backend_) return {};  // the serving host cleans its own
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root_ / kChunkDir, ec)) {
    if (e.path().extension() == kTmpSuffix) out.push_back(e.path());
  }
  return out;
}

FailureDomain Store::failure_domain() const {
  return backend_ ? backend_->failure_domain() : failure_domain_of(root_);
}

std::uint64_t Store::placement_penalty() const {
  return backend_ ? backend_->placement_penalty() : 0;
}

}  // namespace v2p::ec
