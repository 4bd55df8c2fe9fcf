// Test support: an in-process vfilter server on a temporary image and socket.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <thread>

#include "nbd_test_client.hpp"
#include "vfilter/nbd_wire.hpp"
#include "vfilter/server.hpp"

namespace v2p::vfilter::testing {

struct TestServer {
  explicit TestServer(std::uint64_t image_bytes = 64ULL << 20, bool tagging = true,
                      bool read_only = false, std::string vm = "vm1") {
    image = dir.path() / "disk0.raw";
    socket = dir.path() / "nbd.sock";
    make_image(image, image_bytes);
    ServerConfig c;
    c.vdisks = {image_vdisk(vm, "disk0", image, read_only)};
    c.unix_socket = socket;
    c.tagging = tagging;
    server = Server::start(c, &sink);
  }
  [[nodiscard]] std::string uri() const { return "nbd+unix:///disk0?socket=" + socket.string(); }
  TempDir dir;
  std::filesystem::path image;
  std::filesystem::path socket;
  QueueSink sink;
  std::unique_ptr<Server> server;
};

// Polls `done` until it holds; the bound only turns a hang into a failure, no result depends on it.
inline bool eventually(const std::function<bool()>& done,
                       std::chrono::seconds bound = std::chrono::seconds(60)) {
  const auto until = std::chrono::steady_clock::now() + bound;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// Number of pairs of records that share a slot while their [submit, complete] windows overlap.
inline int slot_reuse_in_flight(std::vector<ContextRecord> recs) {
  std::sort(recs.begin(), recs.end(), [](const auto& a, const auto& b) {
    return a.slot != b.slot ? a.slot < b.slot : a.submit_ns < b.submit_ns;
  });
  int bad = 0;
  for (std::size_t i = 1; i < recs.size(); ++i) {
    if (recs[i].slot != 0 && recs[i].slot == recs[i - 1].slot &&
        recs[i - 1].complete_ns > recs[i].submit_ns) {
      ++bad;
    }
  }
  return bad;
}

inline std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::byte((i * 31 + seed * 7 + (i >> 9)) & 0xff);
  return v;
}

}  // namespace v2p::vfilter::testing
