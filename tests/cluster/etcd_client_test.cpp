// The generated etcd client against a real etcd: KV, transactions, leases kept alive and left to
// expire, watch order, and an etcd that is not there yet.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "cluster/etcd_client.hpp"
#include "cluster/etcd_watch.hpp"
#include "cluster/lease_keeper.hpp"
#include "cluster/local_etcd.hpp"
#include "common/test_skip.hpp"

namespace v2p::cluster {
namespace {

using namespace std::chrono_literals;

class EtcdClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    V2P_REQUIRE_TOOLS("etcd");
    etcd_ = std::make_unique<test::LocalEtcd>();
    ASSERT_TRUE(etcd_->start()) << "etcd did not start: " << etcd_->last_error();
    client_ = std::make_unique<EtcdClient>(std::vector<std::string>{etcd_->endpoint()});
  }
  std::unique_ptr<test::LocalEtcd> etcd_;
  std::unique_ptr<EtcdClient> client_;
};

template <typename Pred>
bool wait_for(Pred pred, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

TEST(EtcdEndpoints, ParsesListsWithSchemes) {
  EXPECT_EQ(parse_endpoints("http://10.0.0.1:2379,10.0.0.2:2379/"),
            (std::vector<std::string>{"10.0.0.1:2379", "10.0.0.2:2379"}));
  EXPECT_THROW(parse_endpoints(" ,"), Error);
  EXPECT_EQ(prefix_end("/a/"), "/a0");
  EXPECT_EQ(prefix_end(std::string("a\xff", 2)), "b");
}

TEST_F(EtcdClientTest, PutGetPrefixDelete) {
  client_->put("/t/a/1", "one");
  client_->put("/t/a/2", "two");
  client_->put("/t/b", "other");
  auto one = client_->get("/t/a/1");
  ASSERT_TRUE(one);
  EXPECT_EQ(one->value, "one");
  EXPECT_FALSE(client_->get("/t/a/3"));
  auto range = client_->get_prefix("/t/a/");
  ASSERT_EQ(range.kvs.size(), 2u);
  EXPECT_EQ(range.kvs[1].value, "two");
  EXPECT_GT(range.revision, 0);
  EXPECT_EQ(client_->erase_prefix("/t/a/"), 2);
  EXPECT_TRUE(client_->get_prefix("/t/a/").kvs.empty());
  EXPECT_EQ(client_->erase("/t/b"), 1);
}

TEST_F(EtcdClientTest, TransactionsCompareRevisions) {
  EXPECT_TRUE(client_->put_if_absent("/t/x", "first"));
  EXPECT_FALSE(client_->put_if_absent("/t/x", "second"));
  auto kv = client_->get("/t/x");
  ASSERT_TRUE(kv);
  EXPECT_EQ(kv->value, "first");
  EXPECT_FALSE(client_->put_if_mod_revision("/t/x", "stale", kv->mod_revision - 1));
  EXPECT_TRUE(client_->put_if_mod_revision("/t/x", "next", kv->mod_revision));
  EXPECT_EQ(client_->get("/t/x")->value, "next");
}

TEST_F(EtcdClientTest, LeaseKeptAliveStaysAndAbandonedExpiresWithinTtl) {
  std::vector<std::string> logs;
  LeaseKeeper keeper(
      *client_, "/t/alive/h1", [] { return std::string("up"); }, 2,
      [&](const std::string& l) { logs.push_back(l); });
  ASSERT_TRUE(wait_for([&] { return keeper.fresh(); }, 3s));
  std::this_thread::sleep_for(4s);  // twice the TTL: only the keep-alives hold it
  ASSERT_TRUE(client_->get("/t/alive/h1"));
  EXPECT_TRUE(keeper.fresh());
  EXPECT_EQ(keeper.grants(), 1u);
  EXPECT_GT(client_->lease_time_to_live(keeper.lease_id()), 0);
  keeper.abandon();  // as a kill -9 would: no revoke
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_for([&] { return !client_->get("/t/alive/h1"); }, 5s));
  const auto gone = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(gone, 3500ms) << "TTL 2 s, etcd expires within about TTL + 0.5 s";
  EXPECT_FALSE(keeper.fresh());
  EXPECT_TRUE(logs.empty());
}

TEST_F(EtcdClientTest, RevokeOnDestructionRemovesKeyAtOnce) {
  {
    LeaseKeeper keeper(
        *client_, "/t/alive/h2", [] { return std::string("up"); }, 5, [](const std::string&) {});
    ASSERT_TRUE(wait_for([&] { return client_->get("/t/alive/h2").has_value(); }, 3s));
  }
  EXPECT_FALSE(client_->get("/t/alive/h2"));
}

TEST_F(EtcdClientTest, KeeperRepublishesChangedValue) {
  std::mutex mu;
  std::string value = "v1";
  LeaseKeeper keeper(
      *client_, "/t/alive/h3",
      [&] {
        std::lock_guard lock(mu);
        return value;
      },
      3, [](const std::string&) {}, 100ms);
  ASSERT_TRUE(wait_for([&] { return client_->get("/t/alive/h3").has_value(); }, 3s));
  {
    std::lock_guard lock(mu);
    value = "v2";
  }
  EXPECT_TRUE(wait_for(
      [&] {
        auto kv = client_->get("/t/alive/h3");
        return kv && kv->value == "v2";
      },
      2s));
}

TEST_F(EtcdClientTest, WatchSeesPutsAndLeaseExpiryInOrder) {
  auto start = client_->get_prefix("/t/w/");
  std::mutex mu;
  std::vector<std::string> seen;
  EtcdWatch watch(*client_, "/t/w/", start.revision, [&](const WatchEvent& e) {
    std::lock_guard lock(mu);
    seen.push_back((e.type == WatchEvent::Type::kPut ? "put " : "del ") + e.kv.key + "=" +
                   e.kv.value);
  });
  client_->put("/t/w/a", "1");
  client_->put("/t/w/a", "2");
  client_->put("/t/other", "x");  // outside the prefix
  auto lease = client_->lease_grant(2);
  client_->put("/t/w/l", "leased", lease.id);
  ASSERT_TRUE(wait_for(
      [&] {
        std::lock_guard lock(mu);
        return seen.size() >= 4;
      },
      6s));
  std::lock_guard lock(mu);
  EXPECT_EQ(seen, (std::vector<std::string>{"put /t/w/a=1", "put /t/w/a=2", "put /t/w/l=leased",
                                            "del /t/w/l="}));
}

TEST_F(EtcdClientTest, WatchResumesAfterEtcdRestartWithoutLosingEvents) {
  auto start = client_->get_prefix("/t/r/");
  std::mutex mu;
  std::vector<std::string> seen;
  EtcdWatch watch(*client_, "/t/r/", start.revision, [&](const WatchEvent& e) {
    std::lock_guard lock(mu);
    seen.push_back(e.kv.key);
  });
  client_->put("/t/r/1", "x");
  ASSERT_TRUE(wait_for([&] { return watch.connected(); }, 3s));
  etcd_->stop();
  EXPECT_THROW(client_->put("/t/r/never", "x"), EtcdError);
  ASSERT_TRUE(etcd_->start());
  client_->put("/t/r/2", "x");
  ASSERT_TRUE(wait_for(
      [&] {
        std::lock_guard lock(mu);
        return seen.size() >= 2;
      },
      8s));
  std::lock_guard lock(mu);
  EXPECT_EQ(seen, (std::vector<std::string>{"/t/r/1", "/t/r/2"}));
}

TEST(EtcdUnreachable, OneLineThenRegistersWhenEtcdComes) {
  V2P_REQUIRE_TOOLS("etcd");
  test::LocalEtcd etcd;  // not started yet: nobody listens on its port
  EtcdClient client({etcd.endpoint()}, 300ms);
  std::mutex mu;
  std::vector<std::string> logs;
  LeaseKeeper keeper(
      client, "/t/alive/late", [] { return std::string("up"); }, 2,
      [&](const std::string& l) {
        std::lock_guard lock(mu);
        logs.push_back(l);
      });
  std::this_thread::sleep_for(2500ms);
  EXPECT_FALSE(keeper.fresh());
  {
    std::lock_guard lock(mu);
    ASSERT_EQ(logs.size(), 1u) << "one line per outage, not one per retry";
    EXPECT_NE(logs[0].find("etcd unreachable (" + etcd.endpoint() + ")"), std::string::npos)
        << logs[0];
  }
  ASSERT_TRUE(etcd.start());
  EXPECT_TRUE(wait_for([&] { return keeper.fresh(); }, 12s)) << "backoff is at most 8 s";
  EXPECT_TRUE(client.get("/t/alive/late"));
  std::lock_guard lock(mu);
  EXPECT_EQ(logs.size(), 2u);
}

}  // namespace
}  // namespace v2p::cluster
