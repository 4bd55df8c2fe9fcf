// Little-endian field codec for the on-disk payloads (stream frame declarations, snapshots, the
// erasure-coded chunk headers and metadata log): fixed-width integers as their bytes, strings as
// a length (u32 unless the format says narrower) + bytes. The reader bounds-checks every field,
// since its input comes from files anyone may hand us.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/error.hpp"

namespace v2p {

// Fields are written as their host bytes: that is little-endian only on a little-endian host.
static_assert(std::endian::native == std::endian::little, "the payload codec is little-endian");

class PayloadWriter {
 public:
  template <class T>
  void put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    // resize + memcpy rather than a ranged insert: g++ 12 -O2 sees the inlined insert's
    // reallocation path write past its source (-Wstringop-overflow false positive).
    const std::size_t at = out_.size();
    out_.resize(at + sizeof v);
    std::memcpy(out_.data() + at, &v, sizeof v);
  }
  void put_bytes(std::span<const std::byte> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  // `Len` is the unsigned integer the length is written as; a longer string is an error.
  template <class Len = std::uint32_t>
  void put_string(const std::string& s) {
    static_assert(std::is_unsigned_v<Len>);
    if (s.size() > std::numeric_limits<Len>::max()) {
      throw Error("a string of " + std::to_string(s.size()) + " bytes does not fit its " +
                  std::to_string(8 * sizeof(Len)) + "-bit length");
    }
    put(static_cast<Len>(s.size()));
    put_bytes(std::as_bytes(std::span(s)));
  }
  // What was written so far (to checksum a prefix, say).
  [[nodiscard]] std::span<const std::byte> bytes() const noexcept { return out_; }
  // The bytes, as std::byte or as another byte-sized type (a copy then).
  template <class Byte = std::byte>
  [[nodiscard]] std::vector<Byte> take() && {
    static_assert(sizeof(Byte) == 1);
    if constexpr (std::is_same_v<Byte, std::byte>) {
      return std::move(out_);
    } else {
      const auto* p = reinterpret_cast<const Byte*>(out_.data());
      return std::vector<Byte>(p, p + out_.size());
    }
  }

 private:
  std::vector<std::byte> out_;
};

class PayloadReader {
 public:
  // `what` names the payload in errors: "<what> is truncated".
  PayloadReader(std::span<const std::byte> payload, const char* what) : p_(payload), what_(what) {}

  template <class T>
  T get() {
    static_assert(std::is_trivially_copyable_v<T>);
    need(sizeof(T));
    T v;
    std::memcpy(&v, p_.data() + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }
  // The next `n` bytes, as a view into the payload.
  std::span<const std::byte> get_bytes(std::size_t n) {
    need(n);
    const auto b = p_.subspan(pos_, n);
    pos_ += n;
    return b;
  }
  template <class Len = std::uint32_t>
  std::string get_string() {
    static_assert(std::is_unsigned_v<Len>);
    const auto b = get_bytes(get<Len>());
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
  }
  [[nodiscard]] std::size_t remaining() const noexcept { return p_.size() - pos_; }
  // Throws unless every byte was consumed.
  void expect_end() const {
    if (pos_ != p_.size()) throw Error(std::string(what_) + " has trailing bytes");
  }

 private:
  void need(std::size_t n) const {
    if (p_.size() - pos_ < n) throw Error(std::string(what_) + " is truncated");
  }
  std::span<const std::byte> p_;
  const char* what_;
  std::size_t pos_ = 0;
};

}  // namespace v2p
