// Little-endian field codec for the variable-size frame payloads (declarations, snapshots):
// fixed-width integers as their bytes, strings as u32 length + bytes. The reader bounds-checks
// every field, since its input comes from files anyone may hand us.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "common/error.hpp"

namespace v2p {

class PayloadWriter {
 public:
  template <class T>
  void put(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    out_.insert(out_.end(), p, p + sizeof v);
  }
  void put_string(const std::string& s) {
    put(static_cast<std::uint32_t>(s.size()));
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    out_.insert(out_.end(), p, p + s.size());
  }
  [[nodiscard]] std::vector<std::byte> take() && { return std::move(out_); }

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
  std::string get_string() {
    const auto n = get<std::uint32_t>();
    need(n);
    std::string s(reinterpret_cast<const char*>(p_.data() + pos_), n);
    pos_ += n;
    return s;
  }
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
