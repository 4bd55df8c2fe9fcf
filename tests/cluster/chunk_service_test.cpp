// The chunk service between hosts on one machine (loopback, no etcd): an ec pool whose stores
// are all served by other "hosts" over TLS puts and gets, reads stay exact with a host gone,
// evacuating a lost host's stores rebuilds onto the others, and a peer without the cluster's
// credential is refused before any store is touched.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "cluster/chunk_service.hpp"
#include "cluster/credentials.hpp"
#include "cluster/remote_store.hpp"
#include "common/test_skip.hpp"
#include "ec/pool.hpp"
#include "v2p/chunk.grpc.pb.h"

namespace v2p::cluster {
namespace {

namespace fs = std::filesystem;

class ChunkServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    creds_ = fs::temp_directory_path() / ("v2p-creds-" + std::to_string(::getpid()));
    init_credentials(creds_, {"h1", "h2", "h3", "h4", "gw"});
    other_ = fs::temp_directory_path() / ("v2p-creds-other-" + std::to_string(::getpid()));
    init_credentials(other_, {"h1", "intruder"});  // another CA, same host name h1
  }
  static void TearDownTestSuite() {
    fs::remove_all(creds_);
    fs::remove_all(other_);
  }
  void SetUp() override {
    V2P_REQUIRE_TOOLS("openssl");
    root_ = fs::temp_directory_path() /
            ("v2p-chunks-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(root_ / "meta");
    for (int h = 1; h <= 4; ++h) start_host(h);
  }
  void TearDown() override {
    servers_.clear();
    fs::remove_all(root_);
  }
  void start_host(int h) {
    std::vector<ec::StoreConfig> stores;
    for (int d = 0; d < 2; ++d) {
      auto dir = root_ / ("h" + std::to_string(h)) / ("d" + std::to_string(d));
      fs::create_directories(dir);
      stores.emplace_back(static_cast<std::uint32_t>(h * 10 + d), dir);
    }
    servers_[h] = std::make_unique<ChunkServer>("127.0.0.1:" + std::to_string(ports_[h]),
                                                creds_ / ("h" + std::to_string(h)), stores);
    ports_[h] = servers_[h]->port();
  }
  ec::PoolConfig pool_config(ec::Layout layout, int hosts = 4) {
    ec::PoolConfig c;
    c.metadata_dir = root_ / "meta";
    c.default_layout = layout;
    c.container_bytes = 1 << 20;
    c.block_bytes = 4096;
    c.allow_shared_domains = true;  // host first, then a second store on a host
    c.hedge_delay = std::chrono::milliseconds(50);
    for (int h = 1; h <= hosts; ++h) {
      const std::string host = "h" + std::to_string(h);
      auto ch = peer_channel("127.0.0.1:" + std::to_string(ports_[h]), host, creds_ / "gw");
      for (int d = 0; d < 2; ++d) {
        const auto id = static_cast<std::uint32_t>(h * 10 + d);
        c.stores.emplace_back(id, host + ":d" + std::to_string(d),
                              std::make_shared<RemoteStore>(id, host, ch, nullptr));
      }
    }
    return c;
  }

  static inline fs::path creds_, other_;
  fs::path root_;
  std::map<int, std::unique_ptr<ChunkServer>> servers_;
  std::map<int, int> ports_{{1, 0}, {2, 0}, {3, 0}, {4, 0}};
};

std::vector<std::uint8_t> random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::vector<std::uint8_t> v(n);
  for (auto& b : v) b = static_cast<std::uint8_t>(gen());
  return v;
}

const VdiskKey kKey{VmId{1}, VdiskId{1}};

TEST_F(ChunkServiceTest, PutGetAcrossHostsOneChunkPerHost) {
  ec::Pool pool(pool_config({2, 2}));
  const auto data = random_bytes(3 << 20, 1);
  pool.write(kKey, VirtualOffset{0}, data);
  pool.flush();
  auto back = pool.read(kKey, VirtualOffset{0}, data.size());
  ASSERT_TRUE(back.ok()) << back.error();
  EXPECT_EQ(back.value(), data);
  // Every container has its 4 chunks on 4 different hosts (the failure domain is the host).
  auto st = pool.status();
  ASSERT_FALSE(st.vms.empty());
  EXPECT_EQ(st.vms[0].containers_sharing_domains, 0u);
  EXPECT_EQ(st.vms[0].domains.size(), 4u);
  for (int h = 1; h <= 4; ++h) EXPECT_GT(servers_[h]->requests(), 0u) << "host " << h;
}

TEST_F(ChunkServiceTest, TwoHostsLostReadsStayExactAndEvacuationRestoresKPlusM) {
  ec::Pool pool(pool_config({2, 2}));
  const auto data = random_bytes(4 << 20, 2);
  pool.write(kKey, VirtualOffset{0}, data);
  pool.flush();
  servers_.erase(1);
  servers_.erase(2);
  auto back = pool.read(kKey, VirtualOffset{0}, data.size());
  ASSERT_TRUE(back.ok()) << back.error();
  EXPECT_EQ(back.value(), data);
  EXPECT_GT(pool.status().reads.degraded, 0u);
  // Rebuild the lost hosts' chunks onto the two that are left (two stores each).
  std::uint64_t rebuilt = 0;
  for (std::uint32_t s : {10u, 11u, 20u, 21u}) {
    auto rep = pool.evacuate(s);
    EXPECT_EQ(rep.failed, 0u) << (rep.problems.empty() ? "" : rep.problems[0]);
    rebuilt += rep.chunks_rebuilt;
  }
  EXPECT_GT(rebuilt, 0u);
  for (const auto& s : pool.status().stores) {
    if (s.id / 10 >= 3) {
      EXPECT_EQ(s.chunks_present, s.chunks_expected) << s.id;
    } else {
      EXPECT_EQ(s.chunks_expected, 0u) << s.id;
    }
  }
  // With hosts 1 and 2 still gone, every container is whole again: lose one more store and
  // reads are still exact.
  fs::remove_all(root_ / "h3" / "d0" / "chunks");
  back = pool.read(kKey, VirtualOffset{0}, data.size());
  ASSERT_TRUE(back.ok()) << back.error();
  EXPECT_EQ(back.value(), data);
}

TEST_F(ChunkServiceTest, HostJoinsThenRebalanceEvensTheStores) {
  const auto data = random_bytes(6 << 20, 4);
  {
    ec::Pool pool(pool_config({2, 1}, 3));
    pool.write(kKey, VirtualOffset{0}, data);
    pool.flush();
  }
  ec::Pool pool(pool_config({2, 1}, 4));  // host 4 joined with two empty stores
  auto rep = pool.rebalance();
  EXPECT_EQ(rep.failed, 0u) << (rep.problems.empty() ? "" : rep.problems[0]);
  EXPECT_GT(rep.chunks_rebuilt, 0u);
  std::uint64_t lo = ~0ull, hi = 0;
  for (const auto& s : pool.status().stores) {
    EXPECT_EQ(s.chunks_present, s.chunks_expected) << s.id;
    lo = std::min(lo, s.chunks_expected);
    hi = std::max(hi, s.chunks_expected);
  }
  EXPECT_LE(hi - lo, 1u) << "every store within one chunk of the others";
  EXPECT_EQ(pool.status().vms[0].containers_sharing_domains, 0u);
  auto back = pool.read(kKey, VirtualOffset{0}, data.size());
  ASSERT_TRUE(back.ok()) << back.error();
  EXPECT_EQ(back.value(), data);
}

TEST_F(ChunkServiceTest, FenceRefusesPlacementAndKeepsDataBuffered) {
  auto cfg = pool_config({2, 2});
  bool fresh = false;
  cfg.may_place = [&] { return fresh; };
  ec::Pool pool(cfg);
  const auto data = random_bytes(64 << 10, 3);
  pool.write(kKey, VirtualOffset{0}, data);
  EXPECT_THROW(pool.flush(), Error);
  fresh = true;
  pool.flush();
  auto back = pool.read(kKey, VirtualOffset{0}, data.size());
  ASSERT_TRUE(back.ok()) << back.error();
  EXPECT_EQ(back.value(), data);
}

// A client without a certificate, and one with a certificate of another CA (even for a host
// name the cluster knows), gets nothing: the handshake fails and the store is never asked.
TEST_F(ChunkServiceTest, PeerWithoutTheClusterCredentialIsRefused) {
  const std::string addr = "127.0.0.1:" + std::to_string(ports_[1]);
  const auto before = servers_[1]->requests();
  auto try_probe = [&](std::shared_ptr<grpc::Channel> ch) {
    auto stub = ChunkStore::NewStub(ch);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
    ProbeRequest req;
    req.set_store(10);
    ProbeReply out;
    return stub->Probe(&ctx, req, &out);
  };
  EXPECT_FALSE(try_probe(grpc::CreateChannel(addr, grpc::InsecureChannelCredentials())).ok());
  EXPECT_FALSE(try_probe(peer_channel(addr, "h1", other_ / "h1")).ok());
  // A client with the CA's trust but no client certificate of its own.
  grpc::SslCredentialsOptions o;
  o.pem_root_certs = [&] {
    std::ifstream in(creds_ / "ca.pem");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("h1");
  EXPECT_FALSE(try_probe(grpc::CreateCustomChannel(addr, grpc::SslCredentials(o), args)).ok());
  EXPECT_EQ(servers_[1]->requests(), before);
  // The server's certificate must name the host it is registered as.
  EXPECT_FALSE(try_probe(peer_channel(addr, "h2", creds_ / "gw")).ok());
  // And the cluster's own credential works.
  EXPECT_TRUE(try_probe(peer_channel(addr, "h1", creds_ / "gw")).ok());
  EXPECT_EQ(servers_[1]->requests(), before + 1);
}

TEST(ClusterCredentials, InitMakesOneFolderPerHostAndRejectsBadNames) {
  V2P_REQUIRE_TOOLS("openssl");
  auto dir = fs::temp_directory_path() / ("v2p-creds-init-" + std::to_string(::getpid()));
  init_credentials(dir, {"alpha"});
  EXPECT_TRUE(fs::exists(dir / "ca.key"));
  EXPECT_TRUE(fs::exists(dir / "alpha" / "host.key"));
  EXPECT_EQ(credentials_host(dir / "alpha"), "alpha");
  EXPECT_THROW(init_credentials(dir, {"bad name"}), Error);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace v2p::cluster
