// One real etcd on 127.0.0.1 (free ports picked at start, data in a temporary folder), for the
// client and membership tests. Killed and its folder removed by the destructor, also when a test
// fails half-way.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "cluster/etcd_client.hpp"
#include "common/subprocess.hpp"

namespace v2p::cluster::test {

inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

class LocalEtcd {
 public:
  explicit LocalEtcd(int client_port = 0) : client_port_(client_port ? client_port : free_port()) {
    dir_ = std::filesystem::temp_directory_path() /
           ("v2p-etcd-" + std::to_string(::getpid()) + "-" + std::to_string(client_port_));
    std::filesystem::create_directories(dir_);
  }
  ~LocalEtcd() {
    stop();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Starts etcd and waits until a put goes through (at most 15 s); false if it never did.
  bool start() {
    const int peer = free_port();
    const std::string c = "http://127.0.0.1:" + std::to_string(client_port_);
    const std::string p = "http://127.0.0.1:" + std::to_string(peer);
    const std::string cmd = "exec etcd --name t --data-dir '" + (dir_ / "data").string() +
                            "' --listen-client-urls " + c + " --advertise-client-urls " + c +
                            " --listen-peer-urls " + p + " --initial-advertise-peer-urls " + p +
                            " --initial-cluster t=" + p + " >>'" + (dir_ / "etcd.log").string() +
                            "' 2>&1";
    proc_ = std::make_unique<ChildProcess>(std::vector<std::string>{"sh", "-c", cmd});
    for (int i = 0; i < 150; ++i) {
      try {
        // A fresh client per try: one whose first connect was refused waits out gRPC's backoff.
        EtcdClient client({endpoint()}, std::chrono::milliseconds(500));
        client.put("/v2p-test-ready", "1");
        return true;
      } catch (const std::exception& e) {
        last_error_ = e.what();
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
    return false;
  }
  void stop() {
    if (proc_) {
      proc_->terminate(SIGKILL);
      while (!proc_->exited()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      proc_.reset();
    }
  }
  [[nodiscard]] std::string endpoint() const { return "127.0.0.1:" + std::to_string(client_port_); }
  [[nodiscard]] int port() const noexcept { return client_port_; }
  [[nodiscard]] const std::string& last_error() const noexcept { return last_error_; }

 private:
  int client_port_;
  std::filesystem::path dir_;
  std::unique_ptr<ChildProcess> proc_;
  std::string last_error_;
};

}  // namespace v2p::cluster::test
