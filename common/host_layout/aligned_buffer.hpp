// The one aligned heap buffer for O_DIRECT transfers (4 KiB by default, or the device's
// alignment), owned and freed once.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>

namespace v2p::host_layout {

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t bytes, std::size_t align = 4096) { resize(bytes, align); }
  // Grows (never shrinks) to at least `bytes`, aligned to `align` (a power of two); the contents
  // are not kept. Throws std::bad_alloc.
  void resize(std::size_t bytes, std::size_t align = 4096) {
    if (bytes <= size_ && align <= align_) return;
    align = std::max(align, align_);  // a buffer never loses the alignment it was asked for
    void* p = nullptr;
    const std::size_t rounded = (std::max<std::size_t>(bytes, 1) + align - 1) / align * align;
    if (::posix_memalign(&p, align, rounded) != 0) throw std::bad_alloc();
    mem_.reset(static_cast<std::byte*>(p));
    size_ = bytes;
    align_ = align;
  }
  // The same, reporting failure as false instead of throwing (the data path refuses the request).
  [[nodiscard]] bool try_resize(std::size_t bytes, std::size_t align = 4096) noexcept {
    try {
      resize(bytes, align);
      return true;
    } catch (...) {
      return false;
    }
  }
  [[nodiscard]] std::byte* data() noexcept { return mem_.get(); }
  [[nodiscard]] const std::byte* data() const noexcept { return mem_.get(); }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

 private:
  struct Free {
    void operator()(std::byte* p) const noexcept { std::free(p); }
  };
  std::unique_ptr<std::byte, Free> mem_;
  std::size_t size_ = 0;
  std::size_t align_ = 0;
};

}  // namespace v2p::host_layout
