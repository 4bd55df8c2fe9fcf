// Test support: a minimal NBD client over a unix socket (full control over what goes on the
// wire, including broken requests), temporary directories and images.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace v2p::vfilter::testing {

// A fresh directory on the real file system (O_DIRECT works there), removed with its contents.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A sparse raw image of `bytes` bytes.
void make_image(const std::filesystem::path& path, std::uint64_t bytes);
std::vector<std::byte> read_file_range(const std::filesystem::path& path, std::uint64_t offset,
                                       std::size_t length);

int connect_unix(const std::filesystem::path& socket);
bool send_all(int fd, const void* data, std::size_t len);
bool recv_all(int fd, void* data, std::size_t len);

class NbdTestClient {
 public:
  // Connects and negotiates with NBD_OPT_GO (asking for block sizes unless told not to, which
  // leaves the server's default minimum of 1); throws std::runtime_error.
  NbdTestClient(const std::filesystem::path& socket, const std::string& export_name,
                bool ask_block_size = true);
  ~NbdTestClient();
  NbdTestClient(const NbdTestClient&) = delete;
  NbdTestClient& operator=(const NbdTestClient&) = delete;

  [[nodiscard]] std::uint64_t size() const { return size_; }
  [[nodiscard]] std::uint16_t flags() const { return flags_; }
  [[nodiscard]] int fd() const { return fd_; }

  struct Reply {
    std::uint32_t error = 0;
    std::uint64_t cookie = 0;
  };
  bool send_request(std::uint16_t type, std::uint16_t flags, std::uint64_t cookie,
                    std::uint64_t offset, std::uint32_t length, const void* payload = nullptr);
  Reply read_reply();  // throws when the server closed the connection
  bool read_payload(void* data, std::size_t len) { return recv_all(fd_, data, len); }

  // Synchronous helpers; return the NBD error.
  std::uint32_t write(std::uint64_t offset, const std::vector<std::byte>& data,
                      std::uint16_t flags = 0);
  std::uint32_t read(std::uint64_t offset, std::vector<std::byte>& data);
  std::uint32_t command(std::uint16_t type, std::uint16_t flags, std::uint64_t offset,
                        std::uint32_t length);
  void close();

 private:
  void negotiate(const std::string& export_name, bool ask_block_size);
  int fd_ = -1;
  std::uint64_t size_ = 0;
  std::uint16_t flags_ = 0;
  std::uint64_t next_cookie_ = 1;
};

}  // namespace v2p::vfilter::testing
