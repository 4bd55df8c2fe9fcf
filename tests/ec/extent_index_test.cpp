// The block index against a byte-per-byte model of which write owns each vdisk byte.
#include <gtest/gtest.h>

#include <random>

#include "ec/extent_index.hpp"

namespace v2p::ec {
namespace {

TEST(EcExtentIndex, LaterWritesWinByteForByte) {
  const VdiskKey key{VmId{1}, VdiskId{2}};
  ExtentIndex idx;
  constexpr std::uint64_t kSpace = 4096;
  // model[byte] = (container, offset of that byte inside its block), container 0 = unmapped
  std::vector<std::pair<std::uint64_t, std::uint32_t>> model(kSpace, {0, 0});
  std::mt19937 gen(3);
  for (std::uint64_t c = 1; c <= 400; ++c) {
    const std::uint64_t s = gen() % kSpace;
    const auto len =
        static_cast<std::uint32_t>(1 + gen() % std::min<std::uint64_t>(300, kSpace - s));
    idx.insert(key, c, BlockRef{s, len, static_cast<std::uint32_t>(c * 10), 0});
    for (std::uint32_t i = 0; i < len; ++i) model[s + i] = {c, i};
  }
  for (int q = 0; q < 200; ++q) {
    const std::uint64_t s = gen() % kSpace;
    const std::uint64_t len = 1 + gen() % (kSpace - s);
    std::uint64_t at = s;
    for (const auto& p : idx.lookup(key, s, len)) {
      for (; at < p.voffset; ++at) ASSERT_EQ(model[at].first, 0U) << at;
      for (std::uint64_t i = 0; i < p.length; ++i) {
        ASSERT_EQ(model[p.voffset + i].first, p.container) << p.voffset + i;
        ASSERT_EQ(model[p.voffset + i].second, p.skip + i) << p.voffset + i;
        ASSERT_EQ(p.block.offset, p.container * 10);
      }
      at = p.voffset + p.length;
    }
    for (; at < s + len; ++at) ASSERT_EQ(model[at].first, 0U) << at;
  }
  std::uint64_t mapped = 0;
  for (const auto& m : model) mapped += m.first != 0;
  EXPECT_EQ(idx.live_bytes(key), mapped);
  EXPECT_TRUE(idx.lookup(VdiskKey{VmId{1}, VdiskId{3}}, 0, 100).empty());
}

}  // namespace
}  // namespace v2p::ec
