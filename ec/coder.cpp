#include "ec/coder.hpp"

#include <isa-l/erasure_code.h>

#include <string>

#include "common/error.hpp"

namespace v2p::ec {
namespace {

// ISA-L's API takes non-const pointers even for inputs it only reads.
unsigned char** mutable_ptrs(std::span<const std::uint8_t* const> p) {
  return const_cast<unsigned char**>(reinterpret_cast<const unsigned char* const*>(p.data()));
}

}  // namespace

Coder::Coder(int k, int m) : k_(k), m_(m) {
  if (k < 1 || k > kMaxK || m < 1 || m > kMaxM) {
    throw Error("erasure code " + std::to_string(k) + "+" + std::to_string(m) +
                " is not supported: use 1..32 data and 1..16 parity chunks");
  }
  const int n = k + m;
  matrix_.resize(static_cast<std::size_t>(n) * k);
  gf_gen_cauchy1_matrix(matrix_.data(), n, k);
  enc_tables_.resize(static_cast<std::size_t>(32) * k * m);
  ec_init_tables(k, m, matrix_.data() + static_cast<std::size_t>(k) * k, enc_tables_.data());
}

void Coder::encode(std::span<const std::uint8_t* const> data, std::span<std::uint8_t* const> parity,
                   std::size_t len) const noexcept {
  ec_encode_data(static_cast<int>(len), k_, m_, const_cast<unsigned char*>(enc_tables_.data()),
                 mutable_ptrs(data), const_cast<unsigned char**>(parity.data()));
}

bool Coder::reconstruct(std::span<const int> sources,
                        std::span<const std::uint8_t* const> source_data,
                        std::span<const int> targets, std::span<std::uint8_t* const> target_data,
                        std::size_t len) const {
  const int n = k_ + m_;
  if (static_cast<int>(sources.size()) != k_ || source_data.size() != sources.size() ||
      targets.size() != target_data.size() || targets.empty() ||
      static_cast<int>(targets.size()) > n) {
    return false;
  }
  std::vector<bool> seen(static_cast<std::size_t>(n), false);
  for (int s : sources) {
    if (s < 0 || s >= n || seen[static_cast<std::size_t>(s)]) return false;
    seen[static_cast<std::size_t>(s)] = true;
  }
  for (int t : targets) {
    if (t < 0 || t >= n) return false;
  }
  // B = rows of the survivors; D = B^-1 turns survivors back into the data chunks.
  const auto kk = static_cast<std::size_t>(k_) * k_;
  std::vector<std::uint8_t> b(kk), d(kk);
  for (int r = 0; r < k_; ++r) {
    const auto row = matrix_row(sources[static_cast<std::size_t>(r)]);
    std::copy(row.begin(), row.end(), b.begin() + static_cast<std::ptrdiff_t>(r) * k_);
  }
  if (gf_invert_matrix(b.data(), d.data(), k_) != 0) return false;
  // Target t is matrix row t times the data, i.e. (row t * D) times the survivors.
  std::vector<std::uint8_t> rows(targets.size() * static_cast<std::size_t>(k_), 0);
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const auto a = matrix_row(targets[i]);
    for (int j = 0; j < k_; ++j) {
      std::uint8_t acc = 0;
      for (int l = 0; l < k_; ++l) {
        acc ^= gf_mul(a[static_cast<std::size_t>(l)],
                      d[static_cast<std::size_t>(l) * k_ + static_cast<std::size_t>(j)]);
      }
      rows[i * static_cast<std::size_t>(k_) + static_cast<std::size_t>(j)] = acc;
    }
  }
  std::vector<std::uint8_t> tables(static_cast<std::size_t>(32) * k_ * targets.size());
  ec_init_tables(k_, static_cast<int>(targets.size()), rows.data(), tables.data());
  ec_encode_data(static_cast<int>(len), k_, static_cast<int>(targets.size()), tables.data(),
                 mutable_ptrs(source_data), const_cast<unsigned char**>(target_data.data()));
  return true;
}

}  // namespace v2p::ec
