// Reed-Solomon over GF(2^8) through ISA-L: k data chunks and m parity chunks, any k of which give
// back the rest. The encode matrix is ISA-L's Cauchy matrix (identity on top), because every k x k
// submatrix of it is invertible for k + m <= 256, which a Vandermonde-derived matrix does not
// promise. Tables are built once per coder; decode tables depend on which chunks survive and are
// built per call (their cost is k * targets * 32 bytes, noise next to a megabyte chunk).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace v2p::ec {

inline constexpr int kMaxK = 32;
inline constexpr int kMaxM = 16;

class Coder {
 public:
  // Throws v2p::Error unless 1 <= k <= kMaxK and 1 <= m <= kMaxM.
  Coder(int k, int m);

  [[nodiscard]] int k() const noexcept { return k_; }
  [[nodiscard]] int m() const noexcept { return m_; }
  // Row i of the (k + m) x k encode matrix.
  [[nodiscard]] std::span<const std::uint8_t> matrix_row(int i) const noexcept {
    return {matrix_.data() + static_cast<std::size_t>(i) * k_, static_cast<std::size_t>(k_)};
  }

  // parity[j] = row (k + j) of the matrix times the data chunks, `len` bytes each.
  void encode(std::span<const std::uint8_t* const> data, std::span<std::uint8_t* const> parity,
              std::size_t len) const noexcept;

  // Rebuilds the chunks numbered `targets` (data or parity, 0..k+m-1) from exactly k distinct
  // surviving chunks numbered `sources`. Returns false when the indices are not usable (wrong
  // count, duplicates, out of range); the arithmetic itself cannot fail for a Cauchy matrix.
  [[nodiscard]] bool reconstruct(std::span<const int> sources,
                                 std::span<const std::uint8_t* const> source_data,
                                 std::span<const int> targets,
                                 std::span<std::uint8_t* const> target_data, std::size_t len) const;

 private:
  int k_;
  int m_;
  std::vector<std::uint8_t> matrix_;      // (k + m) x k
  std::vector<std::uint8_t> enc_tables_;  // ec_init_tables of the m parity rows
};

}  // namespace v2p::ec
