// A watch on a key prefix: a thread holds etcd's Watch stream and hands every event to a
// callback, in revision order. When the stream breaks (member down, network cut) it reopens on
// the next member from the revision after the last event seen, so no event is missed or
// repeated; if etcd compacted past that revision, on_resync is called so the owner re-reads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "cluster/etcd_client.hpp"

namespace grpc {
class ClientContext;
}

namespace v2p::cluster {

struct WatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  KeyValue kv;
};

class EtcdWatch {
 public:
  using OnEvent = std::function<void(const WatchEvent&)>;
  using OnResync = std::function<void()>;
  // Events after `start_revision` (the revision of a get_prefix: watch what changed since).
  // Callbacks run on the watch thread.
  EtcdWatch(const EtcdClient& client, std::string prefix, std::int64_t start_revision,
            OnEvent on_event, OnResync on_resync = {});
  ~EtcdWatch();
  EtcdWatch(const EtcdWatch&) = delete;
  EtcdWatch& operator=(const EtcdWatch&) = delete;

  // True while a stream is open and created on some member.
  [[nodiscard]] bool connected() const noexcept { return connected_; }

 private:
  void run();

  std::vector<std::string> endpoints_;
  std::string prefix_;
  std::int64_t next_revision_;
  OnEvent on_event_;
  OnResync on_resync_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> connected_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  grpc::ClientContext* live_ctx_ = nullptr;  // under mu_: cancelled by the destructor
  std::thread thread_;
};

}  // namespace v2p::cluster
