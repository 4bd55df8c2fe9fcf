#include "cluster/remote_store.hpp"

#include <fmt/core.h>
#include <grpcpp/grpcpp.h>

#include <functional>

#include "cluster/credentials.hpp"
#include "cluster/grpc_runtime.hpp"
#include "v2p/chunk.grpc.pb.h"

namespace v2p::cluster {

using namespace std::chrono_literals;

struct RemoteStore::Stub {
  std::unique_ptr<ChunkStore::Stub> stub;
};

namespace {

// Deadlines: a probe is on the placement path (every container), so short; a chunk transfer
// of a few MiB over a loaded link gets longer.
constexpr auto kProbeDeadline = 1000ms;
constexpr auto kTransferDeadline = 10000ms;

void set_deadline(grpc::ClientContext& ctx, std::chrono::milliseconds d) {
  ctx.set_deadline(std::chrono::system_clock::now() + d);
}

ChunkId id_of(std::uint32_t store, const ec::ChunkExpect& e) {
  ChunkId id;
  id.set_store(store);
  id.set_pool_id(e.pool_id);
  id.set_container_id(e.container_id);
  id.set_index(e.index);
  id.set_nonce(e.nonce);
  id.set_k(e.k);
  id.set_m(e.m);
  id.set_chunk_len(e.chunk_len);
  return id;
}

}  // namespace

std::shared_ptr<grpc::Channel> peer_channel(const std::string& address, const std::string& host,
                                            const std::filesystem::path& credentials) {
  keep_grpc_initialised();
  grpc::ChannelArguments args;
  // The peer is addressed by IP; its certificate must still name the host etcd says is there.
  args.SetSslTargetNameOverride(host);
  args.SetMaxReceiveMessageSize(256 << 20);
  args.SetMaxSendMessageSize(256 << 20);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 2000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 2000);
  return grpc::CreateCustomChannel(address, channel_credentials(credentials), args);
}

ec::FailureDomain host_domain(const std::string& host) {
  ec::FailureDomain d;
  d.major = 0xfffffffeU;  // not a device: one domain per host name
  d.minor = static_cast<unsigned>(std::hash<std::string>{}(host));
  d.name = "host " + host;
  return d;
}

RemoteStore::RemoteStore(std::uint32_t store, std::string host,
                         std::shared_ptr<grpc::Channel> channel,
                         std::shared_ptr<const ClusterView> view)
    : store_(store), host_(std::move(host)), view_(std::move(view)), stub_(new Stub) {
  stub_->stub = ChunkStore::NewStub(channel);
}

RemoteStore::~RemoteStore() = default;

bool RemoteStore::host_down() const {
  return view_ && !view_->up(host_);
}

ec::Store::State RemoteStore::probe(std::uint64_t pool_id) const {
  if (host_down() || (view_ && view_->draining(host_))) return ec::Store::State::kMissing;
  grpc::ClientContext ctx;
  set_deadline(ctx, kProbeDeadline);
  ProbeRequest req;
  req.set_store(store_);
  req.set_pool_id(pool_id);
  ProbeReply out;
  if (!stub_->stub->Probe(&ctx, req, &out).ok()) return ec::Store::State::kMissing;
  return static_cast<ec::Store::State>(out.state());
}

void RemoteStore::adopt(std::uint64_t pool_id) const {
  grpc::ClientContext ctx;
  set_deadline(ctx, kTransferDeadline);
  AdoptRequest req;
  req.set_store(store_);
  req.set_pool_id(pool_id);
  Empty out;
  auto s = stub_->stub->Adopt(&ctx, req, &out);
  if (!s.ok()) {
    throw Error(fmt::format("store {} on {}: {}", store_, host_, s.error_message()));
  }
}

ec::Result<bool> RemoteStore::write_chunk(const ec::ChunkHeader& header,
                                          std::span<const std::uint8_t> payload) const {
  using R = ec::Result<bool>;
  if (host_down()) return R::failure(fmt::format("store {}: host {} is down", store_, host_));
  const auto head = ec::encode_chunk_header(header);
  WriteChunkRequest req;
  req.set_store(store_);
  req.set_header(reinterpret_cast<const char*>(head.data()), head.size());
  req.set_payload(reinterpret_cast<const char*>(payload.data()), payload.size());
  grpc::ClientContext ctx;
  set_deadline(ctx, kTransferDeadline);
  WriteChunkReply out;
  auto s = stub_->stub->WriteChunk(&ctx, req, &out);
  if (!s.ok())
    return R::failure(fmt::format("store {} on {}: {}", store_, host_, s.error_message()));
  if (!out.ok()) return R::failure(fmt::format("store {} on {}: {}", store_, host_, out.error()));
  return true;
}

namespace {

ec::Result<std::vector<std::uint8_t>> read_remote(ChunkStore::Stub& stub, std::uint32_t store,
                                                  const std::string& host, const ec::ChunkExpect& e,
                                                  bool whole, std::uint32_t offset,
                                                  std::uint32_t len) {
  using R = ec::Result<std::vector<std::uint8_t>>;
  ReadChunkRequest req;
  *req.mutable_id() = id_of(store, e);
  req.set_whole(whole);
  req.set_offset(offset);
  req.set_len(len);
  grpc::ClientContext ctx;
  set_deadline(ctx, kTransferDeadline);
  ReadChunkReply out;
  auto s = stub.ReadChunk(&ctx, req, &out);
  if (!s.ok()) return R::failure(fmt::format("store {} on {}: {}", store, host, s.error_message()));
  if (!out.ok()) return R::failure(fmt::format("store {} on {}: {}", store, host, out.error()));
  const auto& d = out.data();
  return std::vector<std::uint8_t>(d.begin(), d.end());
}

}  // namespace

ec::Result<std::vector<std::uint8_t>> RemoteStore::read_chunk(const ec::ChunkExpect& e) const {
  if (host_down()) {
    return ec::Result<std::vector<std::uint8_t>>::failure(
        fmt::format("store {}: host {} is down", store_, host_));
  }
  return read_remote(*stub_->stub, store_, host_, e, true, 0, 0);
}

ec::Result<std::vector<std::uint8_t>> RemoteStore::read_range(const ec::ChunkExpect& e,
                                                              std::uint32_t offset,
                                                              std::uint32_t len) const {
  if (host_down()) {
    return ec::Result<std::vector<std::uint8_t>>::failure(
        fmt::format("store {}: host {} is down", store_, host_));
  }
  return read_remote(*stub_->stub, store_, host_, e, false, offset, len);
}

bool RemoteStore::has_chunk(const ec::ChunkExpect& e) const {
  if (host_down()) return false;
  grpc::ClientContext ctx;
  set_deadline(ctx, kProbeDeadline);
  HasChunkReply out;
  return stub_->stub->HasChunk(&ctx, id_of(store_, e), &out).ok() && out.present();
}

void RemoteStore::remove_chunk(std::uint64_t container_id, std::uint8_t index) const noexcept {
  if (host_down()) return;  // an orphan there is removed by a later scrub of that host
  try {
    ChunkId id;
    id.set_store(store_);
    id.set_container_id(container_id);
    id.set_index(index);
    grpc::ClientContext ctx;
    set_deadline(ctx, kProbeDeadline);
    Empty out;
    (void)stub_->stub->RemoveChunk(&ctx, id, &out);
  } catch (...) {
  }
}

std::vector<ec::StoredChunk> RemoteStore::list_chunks() const {
  std::vector<ec::StoredChunk> out;
  if (host_down()) return out;
  ListChunksRequest req;
  req.set_store(store_);
  grpc::ClientContext ctx;
  set_deadline(ctx, kTransferDeadline);
  ListChunksReply reply;
  if (!stub_->stub->ListChunks(&ctx, req, &reply).ok()) return out;
  for (const auto& c : reply.chunks()) {
    out.push_back({c.container_id(), static_cast<std::uint8_t>(c.index()), {}});
  }
  return out;
}

ec::FailureDomain RemoteStore::failure_domain() const {
  return host_domain(host_);
}

std::uint64_t RemoteStore::placement_penalty() const {
  if (!view_) return 0;
  auto state = view_->snapshot();
  auto it = state.hosts.find(host_);
  if (it == state.hosts.end()) return 0;
  // Chunks are the unit of the ranking: a fuller disk or a busier host counts as holding more.
  // 64 chunks for a full disk, 4 per unit of load average (the load-balancer seed's inputs).
  std::uint64_t penalty = static_cast<std::uint64_t>(it->second.info.load * 4);
  for (const auto& s : it->second.info.stores) {
    if (s.id == store_ && s.total_bytes > 0) {
      penalty += (s.total_bytes - std::min(s.free_bytes, s.total_bytes)) * 64 / s.total_bytes;
    }
  }
  return penalty;
}

}  // namespace v2p::cluster
