#include "cluster/etcd_watch.hpp"

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "etcd/rpc.grpc.pb.h"

namespace v2p::cluster {

EtcdWatch::EtcdWatch(const EtcdClient& client, std::string prefix, std::int64_t start_revision,
                     OnEvent on_event, OnResync on_resync)
    : endpoints_(client.endpoints()),
      prefix_(std::move(prefix)),
      next_revision_(start_revision + 1),
      on_event_(std::move(on_event)),
      on_resync_(std::move(on_resync)) {
  thread_ = std::thread([this] { run(); });
}

EtcdWatch::~EtcdWatch() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    if (live_ctx_ != nullptr) live_ctx_->TryCancel();
  }
  cv_.notify_all();
  thread_.join();
}

void EtcdWatch::run() {
  std::size_t member = 0;
  while (!stop_) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    // gRPC pings notice a member whose link was cut (no RST ever comes) within a few seconds.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 1000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 1000);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
    auto channel = grpc::CreateCustomChannel(endpoints_[member % endpoints_.size()],
                                             grpc::InsecureChannelCredentials(), args);
    auto stub = etcdserverpb::Watch::NewStub(channel);
    grpc::ClientContext ctx;
    {
      std::lock_guard lock(mu_);
      if (stop_) break;
      live_ctx_ = &ctx;
    }
    auto stream = stub->Watch(&ctx);
    etcdserverpb::WatchRequest req;
    auto* create = req.mutable_create_request();
    create->set_key(prefix_);
    create->set_range_end(prefix_end(prefix_));
    create->set_start_revision(next_revision_);
    // etcd requires a leader for the watch: a member cut off from the others closes it.
    ctx.AddMetadata("hasleader", "true");
    bool created = false;
    if (stream->Write(req)) {
      etcdserverpb::WatchResponse resp;
      while (stream->Read(&resp)) {
        if (resp.created()) {
          created = true;
          connected_ = true;
        }
        if (resp.compact_revision() != 0) {
          // History gone: start over from now and let the owner re-read the whole prefix.
          next_revision_ = resp.header().revision() + 1;
          if (on_resync_) on_resync_();
          break;
        }
        if (resp.canceled()) break;
        for (const auto& ev : resp.events()) {
          WatchEvent e;
          e.type = ev.type() == mvccpb::Event::DELETE ? WatchEvent::Type::kDelete
                                                      : WatchEvent::Type::kPut;
          e.kv = KeyValue{ev.kv().key(), ev.kv().value(), ev.kv().create_revision(),
                          ev.kv().mod_revision(), ev.kv().lease()};
          next_revision_ = ev.kv().mod_revision() + 1;
          on_event_(e);
        }
      }
    }
    connected_ = false;
    ctx.TryCancel();
    stream->Finish();
    {
      std::lock_guard lock(mu_);
      live_ctx_ = nullptr;
    }
    if (!created) ++member;  // this member would not even start the watch: try the next
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(created ? 50 : 300),
                 [this] { return stop_.load(); });
  }
}

}  // namespace v2p::cluster
