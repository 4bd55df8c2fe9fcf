#include "cluster/chunk_service.hpp"

#include <fmt/core.h>
#include <grpcpp/grpcpp.h>
#include <sys/statvfs.h>

#include <map>

#include "cluster/credentials.hpp"
#include "cluster/grpc_runtime.hpp"
#include "common/error.hpp"
#include "ec/failure_domain.hpp"
#include "ec/store.hpp"
#include "v2p/chunk.grpc.pb.h"

namespace v2p::cluster {

std::pair<std::uint64_t, std::uint64_t> fs_space(const std::filesystem::path& path) {
  struct statvfs s {};
  if (::statvfs(path.c_str(), &s) != 0) return {0, 0};
  return {std::uint64_t{s.f_bavail} * s.f_frsize, std::uint64_t{s.f_blocks} * s.f_frsize};
}

namespace {

ec::ChunkExpect expect_of(const ChunkId& id) {
  return {id.pool_id(),
          id.container_id(),
          id.nonce(),
          static_cast<std::uint8_t>(id.index()),
          static_cast<std::uint8_t>(id.k()),
          static_cast<std::uint8_t>(id.m()),
          id.chunk_len()};
}

}  // namespace

struct ChunkServer::Impl final : public ChunkStore::Service {
  std::map<std::uint32_t, ec::Store> stores;
  std::atomic<std::uint64_t> requests{0};

  const ec::Store* find(std::uint32_t id) {
    ++requests;
    auto it = stores.find(id);
    return it == stores.end() ? nullptr : &it->second;
  }
  static grpc::Status unknown(std::uint32_t id) {
    return {grpc::StatusCode::NOT_FOUND, fmt::format("this host serves no store {}", id)};
  }

  grpc::Status Probe(grpc::ServerContext*, const ProbeRequest* req, ProbeReply* out) override {
    const auto* s = find(req->store());
    if (s == nullptr) return unknown(req->store());
    const auto state = s->probe(req->pool_id());
    out->set_state(static_cast<std::uint32_t>(state));
    out->set_path(s->root().string());
    if (state == ec::Store::State::kOnline || state == ec::Store::State::kNoIdentity) {
      try {
        out->set_domain(ec::failure_domain_of(s->root()).label());
      } catch (const std::exception&) {
      }
      auto [free, total] = fs_space(s->root());
      out->set_free_bytes(free);
      out->set_total_bytes(total);
    }
    return grpc::Status::OK;
  }

  grpc::Status Adopt(grpc::ServerContext*, const AdoptRequest* req, Empty*) override {
    const auto* s = find(req->store());
    if (s == nullptr) return unknown(req->store());
    try {
      s->adopt(req->pool_id());
    } catch (const std::exception& e) {
      return {grpc::StatusCode::FAILED_PRECONDITION, e.what()};
    }
    return grpc::Status::OK;
  }

  grpc::Status WriteChunk(grpc::ServerContext*, const WriteChunkRequest* req,
                          WriteChunkReply* out) override {
    const auto* s = find(req->store());
    if (s == nullptr) return unknown(req->store());
    const auto& head = req->header();
    auto h = ec::parse_chunk_header(std::span<const std::uint8_t>(
        reinterpret_cast<const std::uint8_t*>(head.data()), head.size()));
    if (!h.ok()) {
      out->set_error("bad chunk header from peer: " + h.error());
      return grpc::Status::OK;
    }
    const auto& p = req->payload();
    auto r = s->write_chunk(h.value(), {reinterpret_cast<const std::uint8_t*>(p.data()), p.size()});
    out->set_ok(r.ok());
    if (!r.ok()) out->set_error(r.error());
    return grpc::Status::OK;
  }

  grpc::Status ReadChunk(grpc::ServerContext*, const ReadChunkRequest* req,
                         ReadChunkReply* out) override {
    const auto* s = find(req->id().store());
    if (s == nullptr) return unknown(req->id().store());
    const auto e = expect_of(req->id());
    auto r = req->whole() ? s->read_chunk(e) : s->read_range(e, req->offset(), req->len());
    out->set_ok(r.ok());
    if (r.ok()) {
      out->set_data(reinterpret_cast<const char*>(r.value().data()), r.value().size());
    } else {
      out->set_error(r.error());
    }
    return grpc::Status::OK;
  }

  grpc::Status HasChunk(grpc::ServerContext*, const ChunkId* req, HasChunkReply* out) override {
    const auto* s = find(req->store());
    if (s == nullptr) return unknown(req->store());
    out->set_present(s->has_chunk(expect_of(*req)));
    return grpc::Status::OK;
  }

  grpc::Status RemoveChunk(grpc::ServerContext*, const ChunkId* req, Empty*) override {
    const auto* s = find(req->store());
    if (s == nullptr) return unknown(req->store());
    s->remove_chunk(req->container_id(), static_cast<std::uint8_t>(req->index()));
    return grpc::Status::OK;
  }

  grpc::Status ListChunks(grpc::ServerContext*, const ListChunksRequest* req,
                          ListChunksReply* out) override {
    const auto* s = find(req->store());
    if (s == nullptr) return unknown(req->store());
    for (const auto& c : s->list_chunks()) {
      auto* l = out->add_chunks();
      l->set_container_id(c.container_id);
      l->set_index(c.index);
    }
    out->set_temporaries(static_cast<std::uint32_t>(s->list_temporaries().size()));
    return grpc::Status::OK;
  }
};

ChunkServer::ChunkServer(const std::string& address, const std::filesystem::path& credentials,
                         const std::vector<ec::StoreConfig>& stores)
    : impl_(std::make_unique<Impl>()) {
  keep_grpc_initialised();
  for (const auto& s : stores) impl_->stores.emplace(s.id, ec::Store(s.id, s.path));
  grpc::ServerBuilder b;
  b.AddListeningPort(address, server_credentials(credentials), &port_);
  b.RegisterService(impl_.get());
  b.SetMaxReceiveMessageSize(256 << 20);
  b.SetMaxSendMessageSize(256 << 20);
  server_ = b.BuildAndStart();
  if (!server_ || port_ == 0) {
    throw Error(fmt::format("chunk service: cannot listen on {}", address));
  }
}

ChunkServer::~ChunkServer() {
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

std::uint64_t ChunkServer::requests() const noexcept {
  return impl_->requests;
}

}  // namespace v2p::cluster
