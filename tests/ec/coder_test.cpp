// The ISA-L coder against its reference twin (gf_reference.hpp), with fixed seeds.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "common/error.hpp"
#include "ec/coder.hpp"
#include "gf_reference.hpp"

namespace v2p::ec {
namespace {

using Chunks = std::vector<std::vector<std::uint8_t>>;

Chunks random_chunks(int count, std::size_t len, std::uint32_t seed) {
  std::mt19937 gen(seed);
  Chunks c(static_cast<std::size_t>(count), std::vector<std::uint8_t>(len));
  for (auto& v : c) {
    for (auto& b : v) b = static_cast<std::uint8_t>(gen());
  }
  return c;
}

Chunks encode(const Coder& coder, const Chunks& data) {
  const std::size_t len = data.front().size();
  Chunks parity(static_cast<std::size_t>(coder.m()), std::vector<std::uint8_t>(len));
  std::vector<const std::uint8_t*> dp;
  std::vector<std::uint8_t*> pp;
  for (const auto& d : data) dp.push_back(d.data());
  for (auto& p : parity) pp.push_back(p.data());
  coder.encode(dp, pp, len);
  return parity;
}

TEST(EcGfReference, FieldLaws) {
  for (int a = 1; a < 256; ++a) {
    EXPECT_EQ(
        reference::mul(static_cast<std::uint8_t>(a), reference::inv(static_cast<std::uint8_t>(a))),
        1);
  }
  EXPECT_EQ(reference::mul(2, 0x80), 0x1d);  // x * x^7 = x^8 = the polynomial's low byte
}

TEST(EcCoder, MatrixIsTheReferenceCauchyMatrix) {
  for (auto [k, m] : {std::pair{4, 2}, {8, 3}, {10, 4}, {1, 1}, {32, 16}}) {
    const Coder c(k, m);
    const auto ref = reference::cauchy_matrix(k, m);
    for (int i = 0; i < k + m; ++i) {
      const auto row = c.matrix_row(i);
      EXPECT_TRUE(std::equal(row.begin(), row.end(), ref.begin() + i * k))
          << k << "+" << m << " row " << i;
    }
  }
}

TEST(EcCoder, EncodeMatchesReference) {
  std::uint32_t seed = 1;
  for (auto [k, m] : {std::pair{4, 2}, {8, 3}, {10, 4}, {3, 1}, {16, 8}}) {
    // Odd lengths exercise ISA-L's tail handling next to its vector loop.
    for (std::size_t len : {std::size_t{1}, std::size_t{31}, std::size_t{64}, std::size_t{1000},
                            std::size_t{4096 + 17}}) {
      const auto data = random_chunks(k, len, seed++);
      const Coder c(k, m);
      const auto parity = encode(c, data);
      const auto ref = reference::cauchy_matrix(k, m);
      const std::vector<std::uint8_t> rows(ref.begin() + k * k, ref.end());
      EXPECT_EQ(parity, reference::multiply(rows, m, k, data)) << k << "+" << m << " len " << len;
    }
  }
}

// Every erasure pattern of up to m chunks (data or parity) is rebuilt exactly.
TEST(EcCoder, ReconstructsEveryPatternUpToM) {
  for (auto [k, m] : {std::pair{4, 2}, {5, 3}, {6, 2}}) {
    const int n = k + m;
    const std::size_t len = 333;
    const auto data = random_chunks(k, len, 42);
    const Coder c(k, m);
    Chunks all = data;
    for (auto& p : encode(c, data)) all.push_back(p);
    for (unsigned mask = 1; mask < (1U << n); ++mask) {
      const int lost = __builtin_popcount(mask);
      if (lost > m) continue;
      std::vector<int> src, targets;
      std::vector<const std::uint8_t*> sp;
      for (int i = 0; i < n && static_cast<int>(src.size()) < k; ++i) {
        if (!(mask & (1U << i))) {
          src.push_back(i);
          sp.push_back(all[static_cast<std::size_t>(i)].data());
        }
      }
      for (int i = 0; i < n; ++i) {
        if (mask & (1U << i)) targets.push_back(i);
      }
      Chunks out(targets.size(), std::vector<std::uint8_t>(len, 0xee));
      std::vector<std::uint8_t*> op;
      for (auto& o : out) op.push_back(o.data());
      ASSERT_TRUE(c.reconstruct(src, sp, targets, op, len));
      for (std::size_t t = 0; t < targets.size(); ++t) {
        EXPECT_EQ(out[t], all[static_cast<std::size_t>(targets[t])])
            << k << "+" << m << " mask " << mask << " chunk " << targets[t];
      }
    }
  }
}

// The decode matrix agrees with the reference inverse of the survivors' rows.
TEST(EcCoder, DecodeMatchesReferenceInverse) {
  const int k = 8, m = 3;
  const Coder c(k, m);
  const auto data = random_chunks(k, 256, 7);
  Chunks all = data;
  for (auto& p : encode(c, data)) all.push_back(p);
  const std::vector<int> src{0, 2, 3, 5, 6, 8, 9, 10};  // lost 1, 4 and 7
  const auto a = reference::cauchy_matrix(k, m);
  std::vector<std::uint8_t> b;
  Chunks survivors;
  for (int s : src) {
    b.insert(b.end(), a.begin() + s * k, a.begin() + (s + 1) * k);
    survivors.push_back(all[static_cast<std::size_t>(s)]);
  }
  const auto d = reference::invert(b, k);
  ASSERT_TRUE(d.has_value());
  const auto ref_data = reference::multiply(*d, k, k, survivors);
  EXPECT_EQ(ref_data, data);
  std::vector<const std::uint8_t*> sp;
  for (const auto& s : survivors) sp.push_back(s.data());
  const std::vector<int> targets{1, 4, 7};
  Chunks out(3, std::vector<std::uint8_t>(256));
  std::vector<std::uint8_t*> op{out[0].data(), out[1].data(), out[2].data()};
  ASSERT_TRUE(c.reconstruct(src, sp, targets, op, 256));
  EXPECT_EQ(out[0], data[1]);
  EXPECT_EQ(out[1], data[4]);
  EXPECT_EQ(out[2], data[7]);
}

TEST(EcCoder, RefusesUnusableSources) {
  const Coder c(4, 2);
  std::vector<std::uint8_t> buf(64 * 8);
  std::vector<const std::uint8_t*> sp(4, buf.data());
  std::vector<std::uint8_t*> op(1, buf.data() + 64 * 6);
  const std::vector<int> t{0};
  EXPECT_FALSE(c.reconstruct(std::vector<int>{1, 2, 3}, std::span(sp).first(3), t, op, 64));  // k-1
  EXPECT_FALSE(c.reconstruct(std::vector<int>{1, 1, 2, 3}, sp, t, op, 64));  // duplicate
  EXPECT_FALSE(c.reconstruct(std::vector<int>{1, 2, 3, 6}, sp, t, op, 64));  // out of range
  EXPECT_THROW(Coder(0, 2), Error);
  EXPECT_THROW(Coder(4, 0), Error);
  EXPECT_THROW(Coder(33, 2), Error);
}

}  // namespace
}  // namespace v2p::ec
