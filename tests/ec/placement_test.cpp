#include <gtest/gtest.h>

#include <set>

#include "common/error.hpp"
#include "ec/placement.hpp"

namespace v2p::ec {
namespace {

FailureDomain disk(unsigned minor) {
  return {8, minor, "sd" + std::to_string(minor)};
}

std::vector<Candidate> stores(std::initializer_list<std::pair<std::uint32_t, unsigned>> s) {
  std::vector<Candidate> out;
  for (auto [id, d] : s) out.push_back({id, disk(d), 0});
  return out;
}

TEST(EcPlacement, OneChunkPerDomain) {
  const auto c = stores({{1, 0}, {2, 0}, {3, 16}, {4, 32}, {5, 48}, {6, 64}, {7, 80}});
  const auto p = place_chunks(c, 6, false);
  ASSERT_EQ(p.size(), 6U);
  std::set<unsigned> domains;
  for (auto id : p) domains.insert(c[id - 1].domain.minor);
  EXPECT_EQ(domains.size(), 6U);
}

TEST(EcPlacement, RefusesTooFewDomainsAndSaysWhich) {
  const auto c = stores({{1, 0}, {2, 0}, {3, 16}, {4, 16}, {5, 32}, {6, 32}});
  try {
    (void)place_chunks(c, 6, false);
    FAIL() << "placed 6 chunks on 3 domains";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("distinct failure domains"), std::string::npos) << what;
    EXPECT_NE(what.find("sd16 (8:16) [stores 3,4]"), std::string::npos) << what;
    EXPECT_NE(what.find("allow_shared_domains"), std::string::npos) << what;
  }
}

TEST(EcPlacement, SharedDomainsWhenAllowedSpreadEvenly) {
  const auto c = stores({{1, 0}, {2, 0}, {3, 16}, {4, 16}, {5, 32}, {6, 32}});
  const auto p = place_chunks(c, 6, true);
  std::set<std::uint32_t> ids(p.begin(), p.end());
  EXPECT_EQ(ids.size(), 6U);  // never two chunks on one store
  EXPECT_THROW((void)place_chunks(c, 7, true), Error);
}

TEST(EcPlacement, LeastLoadedFirst) {
  auto c = stores({{1, 0}, {2, 16}, {3, 32}, {4, 48}});
  c[0].load = 10;
  c[1].load = 10;
  const auto p = place_chunks(c, 2, false);
  EXPECT_EQ(std::set<std::uint32_t>(p.begin(), p.end()), (std::set<std::uint32_t>{3, 4}));
}

TEST(EcPlacement, PlaceOneAvoidsTakenStoresAndDomains) {
  const auto c = stores({{1, 0}, {2, 0}, {3, 16}, {4, 32}});
  const std::vector<std::uint32_t> taken{1, 3};
  const std::vector<FailureDomain> domains{disk(0), disk(16)};
  EXPECT_EQ(place_one(c, taken, domains, false), 4U);
  const std::vector<std::uint32_t> taken2{1, 3, 4};
  const std::vector<FailureDomain> domains2{disk(0), disk(16), disk(32)};
  EXPECT_THROW((void)place_one(c, taken2, domains2, false), Error);
  EXPECT_EQ(place_one(c, taken2, domains2, true), 2U);
}

}  // namespace
}  // namespace v2p::ec
