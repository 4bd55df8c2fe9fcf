// Little-endian encoding for the on-disk formats. The reader never reads past its span: every
// get returns false once the bytes run out, so parsers of untrusted files stay in bounds.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace v2p::ec {

class ByteWriter {
 public:
  template <class T>
  void put(T v) {
    for (std::size_t i = 0; i < sizeof(T); ++i)
      out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  void put_bytes(std::span<const std::uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void put_string(const std::string& s) {
    put<std::uint16_t>(static_cast<std::uint16_t>(s.size()));
    out_.insert(out_.end(), s.begin(), s.end());
  }
  [[nodiscard]] std::vector<std::uint8_t>& bytes() noexcept { return out_; }

 private:
  std::vector<std::uint8_t> out_;
};

class ByteReader {
 public:
  explicit ByteReader(std::span<const std::uint8_t> in) : in_(in) {}
  template <class T>
  [[nodiscard]] bool get(T& v) {
    if (in_.size() - pos_ < sizeof(T)) return false;
    std::uint64_t x = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i) x |= std::uint64_t{in_[pos_ + i]} << (8 * i);
    v = static_cast<T>(x);
    pos_ += sizeof(T);
    return true;
  }
  [[nodiscard]] bool get_string(std::string& s) {
    std::uint16_t n = 0;
    if (!get(n) || in_.size() - pos_ < n) return false;
    s.assign(reinterpret_cast<const char*>(in_.data() + pos_), n);
    pos_ += n;
    return true;
  }
  [[nodiscard]] std::size_t remaining() const noexcept { return in_.size() - pos_; }
  [[nodiscard]] std::size_t position() const noexcept { return pos_; }

 private:
  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
};

}  // namespace v2p::ec
