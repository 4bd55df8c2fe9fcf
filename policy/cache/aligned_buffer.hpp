// Page-aligned heap memory for O_DIRECT transfers to and from the cache file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

namespace v2p::cache {

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t bytes) { resize(bytes); }
  void resize(std::size_t bytes) {
    if (bytes <= size_) return;
    void* p = nullptr;
    if (::posix_memalign(&p, 4096, (bytes + 4095) / 4096 * 4096) != 0) throw std::bad_alloc();
    mem_.reset(static_cast<std::byte*>(p));
    size_ = bytes;
  }
  [[nodiscard]] std::byte* data() noexcept { return mem_.get(); }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

 private:
  struct Free {
    void operator()(std::byte* p) const noexcept { std::free(p); }
  };
  std::unique_ptr<std::byte, Free> mem_;
  std::size_t size_ = 0;
};

}  // namespace v2p::cache
