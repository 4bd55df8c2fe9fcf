// CRC-32C through ISA-L against a bit-at-a-time reference twin, with fixed seeds.
#include "common/crc32c.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace v2p {
namespace {

std::uint32_t crc32c_reference(std::span<const std::byte> data, std::uint32_t crc = 0) {
  crc = ~crc;
  for (const std::byte b : data) {
    crc ^= static_cast<std::uint8_t>(b);
    for (int k = 0; k < 8; ++k) crc = (crc & 1U) ? (crc >> 1) ^ 0x82f63b78U : crc >> 1;
  }
  return ~crc;
}

TEST(Crc32c, KnownVectorAndReferenceTwin) {
  const std::string check = "123456789";
  const auto bytes = std::as_bytes(std::span(check.data(), check.size()));
  EXPECT_EQ(crc32c(bytes), 0xe3069283U);
  EXPECT_EQ(crc32c_reference(bytes), 0xe3069283U);
  EXPECT_EQ(crc32c(std::span<const std::byte>()), 0U);
  std::mt19937_64 rng(7);
  for (int round = 0; round < 300; ++round) {
    std::vector<std::byte> v(rng() % 5000);
    for (auto& b : v) b = std::byte(rng() & 0xff);
    const std::size_t cut = v.empty() ? 0 : rng() % v.size();
    const std::span<const std::byte> all(v);
    ASSERT_EQ(crc32c(all), crc32c_reference(all)) << "size " << v.size();
    // Continuation: crc(a ++ b) == crc(b, crc(a)).
    ASSERT_EQ(crc32c(all.subspan(cut), crc32c(all.first(cut))), crc32c(all));
    const std::span<const std::uint8_t> as_u8(reinterpret_cast<const std::uint8_t*>(v.data()),
                                              v.size());
    ASSERT_EQ(crc32c(as_u8), crc32c(all));
  }
}

}  // namespace
}  // namespace v2p
