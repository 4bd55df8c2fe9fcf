// The reference twin of ec/coder: GF(2^8) arithmetic written out plainly (shift-and-add
// multiplication, inverse by search, Gauss-Jordan elimination), sharing no code with ISA-L.
// Slow and obviously right; the tests compare the coder against it with fixed seeds.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace v2p::ec::reference {

// Multiplication modulo x^8 + x^4 + x^3 + x^2 + 1 (0x11d), the field ISA-L uses.
inline std::uint8_t mul(std::uint8_t a, std::uint8_t b) {
  std::uint8_t p = 0;
  while (b) {
    if (b & 1) p ^= a;
    const bool carry = a & 0x80;
    a = static_cast<std::uint8_t>(a << 1);
    if (carry) a ^= 0x1d;
    b >>= 1;
  }
  return p;
}

inline std::uint8_t inv(std::uint8_t a) {
  for (int x = 1; x < 256; ++x) {
    if (mul(a, static_cast<std::uint8_t>(x)) == 1) return static_cast<std::uint8_t>(x);
  }
  return 0;  // 0 has no inverse
}

// (k + m) x k: identity on top, Cauchy rows 1 / (i ^ j) below.
inline std::vector<std::uint8_t> cauchy_matrix(int k, int m) {
  std::vector<std::uint8_t> a(static_cast<std::size_t>(k + m) * k, 0);
  for (int i = 0; i < k; ++i) a[static_cast<std::size_t>(i) * k + i] = 1;
  for (int i = k; i < k + m; ++i) {
    for (int j = 0; j < k; ++j) {
      a[static_cast<std::size_t>(i) * k + j] = inv(static_cast<std::uint8_t>(i ^ j));
    }
  }
  return a;
}

// out = rows x data, byte by byte.
inline std::vector<std::vector<std::uint8_t>> multiply(
    const std::vector<std::uint8_t>& rows, int nrows, int k,
    const std::vector<std::vector<std::uint8_t>>& data) {
  const std::size_t len = data.front().size();
  std::vector<std::vector<std::uint8_t>> out(static_cast<std::size_t>(nrows),
                                             std::vector<std::uint8_t>(len, 0));
  for (int r = 0; r < nrows; ++r) {
    for (int j = 0; j < k; ++j) {
      const std::uint8_t c = rows[static_cast<std::size_t>(r) * k + j];
      for (std::size_t b = 0; b < len; ++b) {
        out[static_cast<std::size_t>(r)][b] ^= mul(c, data[static_cast<std::size_t>(j)][b]);
      }
    }
  }
  return out;
}

// Inverse of a k x k matrix by Gauss-Jordan; nullopt when singular.
inline std::optional<std::vector<std::uint8_t>> invert(std::vector<std::uint8_t> a, int k) {
  const auto at = [k](std::vector<std::uint8_t>& m, int r, int c) -> std::uint8_t& {
    return m[static_cast<std::size_t>(r) * k + c];
  };
  std::vector<std::uint8_t> b(static_cast<std::size_t>(k) * k, 0);
  for (int i = 0; i < k; ++i) at(b, i, i) = 1;
  for (int col = 0; col < k; ++col) {
    int piv = col;
    while (piv < k && at(a, piv, col) == 0) ++piv;
    if (piv == k) return std::nullopt;
    for (int c = 0; c < k; ++c) {
      std::swap(at(a, piv, c), at(a, col, c));
      std::swap(at(b, piv, c), at(b, col, c));
    }
    const std::uint8_t f = inv(at(a, col, col));
    for (int c = 0; c < k; ++c) {
      at(a, col, c) = mul(at(a, col, c), f);
      at(b, col, c) = mul(at(b, col, c), f);
    }
    for (int r = 0; r < k; ++r) {
      if (r == col || at(a, r, col) == 0) continue;
      const std::uint8_t g = at(a, r, col);
      for (int c = 0; c < k; ++c) {
        at(a, r, c) ^= mul(g, at(a, col, c));
        at(b, r, c) ^= mul(g, at(b, col, c));
      }
    }
  }
  return b;
}

}  // namespace v2p::ec::reference
