#include "nbd_test_client.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <stdexcept>

#include "vfilter/nbd_wire.hpp"

namespace v2p::vfilter::testing {

using namespace nbd;

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "v2p-vfilter-test-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void make_image(const std::filesystem::path& path, std::uint64_t bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc);
  std::filesystem::resize_file(path, bytes);
}

std::vector<std::byte> read_file_range(const std::filesystem::path& path, std::uint64_t offset,
                                       std::size_t length) {
  std::vector<std::byte> out(length);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + path.string());
  const auto n = ::pread(fd, out.data(), length, static_cast<off_t>(offset));
  ::close(fd);
  if (n != static_cast<ssize_t>(length)) throw std::runtime_error("short read of " + path.string());
  return out;
}

int connect_unix(const std::filesystem::path& socket) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket.c_str(), sizeof addr.sun_path - 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot connect to " + socket.string());
  }
  return fd;
}

bool send_all(int fd, const void* data, std::size_t len) {
  const auto* p = static_cast<const char*>(data);
  while (len > 0) {
    const ssize_t n = ::send(fd, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<std::size_t>(n);
  }
  return true;
}

bool recv_all(int fd, void* data, std::size_t len) {
  auto* p = static_cast<char*>(data);
  while (len > 0) {
    const ssize_t n = ::recv(fd, p, len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    len -= static_cast<std::size_t>(n);
  }
  return true;
}

NbdTestClient::NbdTestClient(const std::filesystem::path& socket, const std::string& export_name,
                             bool ask_block_size)
    : fd_(connect_unix(socket)) {
  try {
    negotiate(export_name, ask_block_size);
  } catch (...) {
    close();
    throw;
  }
}

void NbdTestClient::negotiate(const std::string& export_name, bool ask_block_size) {
  std::byte greet[18];
  if (!recv_all(fd_, greet, sizeof greet) || get_be64(greet) != kNbdMagic) {
    close();
    throw std::runtime_error("no NBD greeting");
  }
  std::vector<std::byte> out;
  put_be32(out, kClientFixedNewstyle | kClientNoZeroes);
  std::vector<std::byte> data;
  put_be32(data, static_cast<std::uint32_t>(export_name.size()));
  put_bytes(data, export_name);
  put_be16(data, ask_block_size ? 1 : 0);
  if (ask_block_size) put_be16(data, kInfoBlockSize);
  put_be64(out, kOptMagic);
  put_be32(out, kOptGo);
  put_be32(out, static_cast<std::uint32_t>(data.size()));
  out.insert(out.end(), data.begin(), data.end());
  if (!send_all(fd_, out.data(), out.size())) throw std::runtime_error("send failed");
  for (;;) {
    std::byte h[20];
    if (!recv_all(fd_, h, sizeof h)) throw std::runtime_error("handshake reply missing");
    const std::uint32_t type = get_be32(h + 12);
    std::vector<std::byte> payload(get_be32(h + 16));
    if (!recv_all(fd_, payload.data(), payload.size())) throw std::runtime_error("short reply");
    if (type == kRepAck) break;
    if (type & kRepErrBit) throw std::runtime_error("NBD_OPT_GO refused");
    if (type == kRepInfo && payload.size() >= 12 && get_be16(payload.data()) == kInfoExport) {
      size_ = get_be64(payload.data() + 2);
      flags_ = get_be16(payload.data() + 10);
    }
  }
}

NbdTestClient::~NbdTestClient() {
  close();
}

void NbdTestClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool NbdTestClient::send_request(std::uint16_t type, std::uint16_t flags, std::uint64_t cookie,
                                 std::uint64_t offset, std::uint32_t length, const void* payload) {
  std::vector<std::byte> out;
  put_be32(out, kRequestMagic);
  put_be16(out, flags);
  put_be16(out, type);
  put_be64(out, cookie);
  put_be64(out, offset);
  put_be32(out, length);
  if (payload != nullptr) {
    const auto* b = static_cast<const std::byte*>(payload);
    out.insert(out.end(), b, b + length);
  }
  return send_all(fd_, out.data(), out.size());
}

NbdTestClient::Reply NbdTestClient::read_reply() {
  std::byte h[16];
  if (!recv_all(fd_, h, sizeof h)) throw std::runtime_error("connection closed by the server");
  if (get_be32(h) != kSimpleReplyMagic) throw std::runtime_error("bad reply magic");
  return {get_be32(h + 4), get_be64(h + 8)};
}

std::uint32_t NbdTestClient::write(std::uint64_t offset, const std::vector<std::byte>& data,
                                   std::uint16_t flags) {
  const auto cookie = next_cookie_++;
  send_request(kCmdWrite, flags, cookie, offset, static_cast<std::uint32_t>(data.size()),
               data.data());
  return read_reply().error;
}

std::uint32_t NbdTestClient::read(std::uint64_t offset, std::vector<std::byte>& data) {
  const auto cookie = next_cookie_++;
  send_request(kCmdRead, 0, cookie, offset, static_cast<std::uint32_t>(data.size()));
  const auto r = read_reply();
  if (r.error == 0 && !read_payload(data.data(), data.size())) {
    throw std::runtime_error("short read payload");
  }
  return r.error;
}

std::uint32_t NbdTestClient::command(std::uint16_t type, std::uint16_t flags, std::uint64_t offset,
                                     std::uint32_t length) {
  const auto cookie = next_cookie_++;
  send_request(type, flags, cookie, offset, length);
  return read_reply().error;
}

}  // namespace v2p::vfilter::testing
