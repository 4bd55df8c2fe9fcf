#include "cluster/etcd_client.hpp"

#include <fmt/core.h>
#include <grpcpp/grpcpp.h>

#include <mutex>

#include "cluster/grpc_runtime.hpp"
#include "etcd/rpc.grpc.pb.h"

namespace v2p::cluster {

std::vector<std::string> parse_endpoints(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    std::string e = text.substr(start, comma - start);
    e.erase(0, e.find_first_not_of(" \t"));
    e.erase(e.find_last_not_of(" \t") + 1);
    for (const char* scheme : {"http://", "https://"}) {
      if (e.rfind(scheme, 0) == 0) e = e.substr(std::string(scheme).size());
    }
    while (!e.empty() && e.back() == '/') e.pop_back();
    if (!e.empty()) out.push_back(e);
    start = comma + 1;
  }
  if (out.empty())
    throw Error(fmt::format("no etcd endpoint in '{}' (expected HOST:PORT,...)", text));
  return out;
}

std::string prefix_end(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    auto& c = reinterpret_cast<unsigned char&>(end.back());
    if (c < 0xff) {
      ++c;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

// One channel per member: a member that is cut off (alive, no quorum) answers linearizable calls
// only with a deadline, so the client moves on to the next member and stays there.
struct EtcdClient::Stubs {
  struct Member {
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<etcdserverpb::KV::Stub> kv;
    std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  };
  std::vector<Member> members;
  std::mutex mu;
  std::size_t current = 0;
};

namespace {

std::shared_ptr<grpc::Channel> make_channel(const std::string& endpoint) {
  grpc::ChannelArguments args;
  // A restarted member is found again within a second, not after gRPC's default 20 s backoff.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
}

bool worth_another_member(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
         s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
         s.error_code() == grpc::StatusCode::UNKNOWN;
}

}  // namespace

EtcdClient::EtcdClient(std::vector<std::string> endpoints, std::chrono::milliseconds timeout)
    : endpoints_(std::move(endpoints)), timeout_(timeout), stubs_(std::make_unique<Stubs>()) {
  if (endpoints_.empty()) throw Error("etcd: no endpoints given");
  keep_grpc_initialised();
  for (const auto& e : endpoints_) {
    Stubs::Member m;
    m.channel = make_channel(e);
    m.kv = etcdserverpb::KV::NewStub(m.channel);
    m.lease = etcdserverpb::Lease::NewStub(m.channel);
    stubs_->members.push_back(std::move(m));
  }
  channel_ = stubs_->members.front().channel;
}

EtcdClient::~EtcdClient() = default;

namespace {

// Runs `rpc(member)` on the current member, then on the others in turn when a member is
// unreachable or too slow; throws EtcdError naming the last failure.
template <typename Rpc>
void call(EtcdClient::Stubs& stubs, std::chrono::milliseconds timeout, const char* what,
          const Rpc& rpc) {
  std::size_t start;
  {
    std::lock_guard lock(stubs.mu);
    start = stubs.current;
  }
  grpc::Status status;
  const std::size_t n = stubs.members.size();
  for (std::size_t i = 0; i < n; ++i) {
    std::size_t idx = (start + i) % n;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    status = rpc(stubs.members[idx], ctx);
    if (status.ok()) {
      std::lock_guard lock(stubs.mu);
      stubs.current = idx;
      return;
    }
    if (!worth_another_member(status)) break;
  }
  throw EtcdError(fmt::format("etcd {}: {} ({})", what, status.error_message(),
                              static_cast<int>(status.error_code())));
}

KeyValue from_pb(const mvccpb::KeyValue& kv) {
  return KeyValue{kv.key(), kv.value(), kv.create_revision(), kv.mod_revision(), kv.lease()};
}

}  // namespace

void EtcdClient::put(const std::string& key, const std::string& value, std::int64_t lease) {
  etcdserverpb::PutRequest req;
  req.set_key(key);
  req.set_value(value);
  req.set_lease(lease);
  etcdserverpb::PutResponse resp;
  call(*stubs_, timeout_, "put",
       [&](Stubs::Member& m, grpc::ClientContext& ctx) { return m.kv->Put(&ctx, req, &resp); });
}

std::optional<KeyValue> EtcdClient::get(const std::string& key) {
  etcdserverpb::RangeRequest req;
  req.set_key(key);
  etcdserverpb::RangeResponse resp;
  call(*stubs_, timeout_, "get",
       [&](Stubs::Member& m, grpc::ClientContext& ctx) { return m.kv->Range(&ctx, req, &resp); });
  if (resp.kvs_size() == 0) return std::nullopt;
  return from_pb(resp.kvs(0));
}

RangeResult EtcdClient::get_prefix(const std::string& prefix) {
  etcdserverpb::RangeRequest req;
  req.set_key(prefix);
  req.set_range_end(prefix_end(prefix));
  etcdserverpb::RangeResponse resp;
  call(*stubs_, timeout_, "range",
       [&](Stubs::Member& m, grpc::ClientContext& ctx) { return m.kv->Range(&ctx, req, &resp); });
  RangeResult out;
  out.revision = resp.header().revision();
  for (const auto& kv : resp.kvs()) out.kvs.push_back(from_pb(kv));
  return out;
}

std::int64_t EtcdClient::erase(const std::string& key) {
  etcdserverpb::DeleteRangeRequest req;
  req.set_key(key);
  etcdserverpb::DeleteRangeResponse resp;
  call(*stubs_, timeout_, "delete", [&](Stubs::Member& m, grpc::ClientContext& ctx) {
    return m.kv->DeleteRange(&ctx, req, &resp);
  });
  return resp.deleted();
}

std::int64_t EtcdClient::erase_prefix(const std::string& prefix) {
  etcdserverpb::DeleteRangeRequest req;
  req.set_key(prefix);
  req.set_range_end(prefix_end(prefix));
  etcdserverpb::DeleteRangeResponse resp;
  call(*stubs_, timeout_, "delete", [&](Stubs::Member& m, grpc::ClientContext& ctx) {
    return m.kv->DeleteRange(&ctx, req, &resp);
  });
  return resp.deleted();
}

namespace {

bool txn_put(EtcdClient::Stubs& stubs, std::chrono::milliseconds timeout, const std::string& key,
             const std::string& value, std::int64_t lease, bool on_create,
             std::int64_t mod_revision) {
  etcdserverpb::TxnRequest req;
  auto* cmp = req.add_compare();
  cmp->set_key(key);
  cmp->set_result(etcdserverpb::Compare::EQUAL);
  if (on_create) {
    cmp->set_target(etcdserverpb::Compare::CREATE);
    cmp->set_create_revision(0);
  } else {
    cmp->set_target(etcdserverpb::Compare::MOD);
    cmp->set_mod_revision(mod_revision);
  }
  auto* put = req.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  put->set_lease(lease);
  etcdserverpb::TxnResponse resp;
  call(stubs, timeout, "txn", [&](EtcdClient::Stubs::Member& m, grpc::ClientContext& ctx) {
    return m.kv->Txn(&ctx, req, &resp);
  });
  return resp.succeeded();
}

}  // namespace

bool EtcdClient::put_if_absent(const std::string& key, const std::string& value,
                               std::int64_t lease) {
  return txn_put(*stubs_, timeout_, key, value, lease, true, 0);
}

bool EtcdClient::put_if_mod_revision(const std::string& key, const std::string& value,
                                     std::int64_t mod_revision, std::int64_t lease) {
  return txn_put(*stubs_, timeout_, key, value, lease, false, mod_revision);
}

Lease EtcdClient::lease_grant(std::int64_t ttl_seconds) {
  etcdserverpb::LeaseGrantRequest req;
  req.set_ttl(ttl_seconds);
  etcdserverpb::LeaseGrantResponse resp;
  call(*stubs_, timeout_, "lease grant", [&](Stubs::Member& m, grpc::ClientContext& ctx) {
    return m.lease->LeaseGrant(&ctx, req, &resp);
  });
  if (!resp.error().empty()) throw EtcdError("etcd lease grant: " + resp.error());
  return Lease{resp.id(), resp.ttl()};
}

void EtcdClient::lease_revoke(std::int64_t id) {
  etcdserverpb::LeaseRevokeRequest req;
  req.set_id(id);
  etcdserverpb::LeaseRevokeResponse resp;
  call(*stubs_, timeout_, "lease revoke", [&](Stubs::Member& m, grpc::ClientContext& ctx) {
    return m.lease->LeaseRevoke(&ctx, req, &resp);
  });
}

std::int64_t EtcdClient::lease_keepalive(std::int64_t id) {
  etcdserverpb::LeaseKeepAliveResponse resp;
  call(*stubs_, timeout_, "lease keep-alive", [&](Stubs::Member& m, grpc::ClientContext& ctx) {
    // etcd's keep-alive is a stream; one request and its answer per round is all a heartbeat
    // needs, and a fresh stream per round needs no reconnect logic of its own.
    auto stream = m.lease->LeaseKeepAlive(&ctx);
    etcdserverpb::LeaseKeepAliveRequest req;
    req.set_id(id);
    if (!stream->Write(req) || !stream->Read(&resp)) {
      ctx.TryCancel();
      auto s = stream->Finish();
      return s.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "keep-alive stream closed") : s;
    }
    stream->WritesDone();
    ctx.TryCancel();
    stream->Finish();
    return grpc::Status::OK;
  });
  return resp.ttl();
}

std::int64_t EtcdClient::lease_time_to_live(std::int64_t id) {
  etcdserverpb::LeaseTimeToLiveRequest req;
  req.set_id(id);
  etcdserverpb::LeaseTimeToLiveResponse resp;
  call(*stubs_, timeout_, "lease time-to-live", [&](Stubs::Member& m, grpc::ClientContext& ctx) {
    return m.lease->LeaseTimeToLive(&ctx, req, &resp);
  });
  return resp.ttl();
}

}  // namespace v2p::cluster
