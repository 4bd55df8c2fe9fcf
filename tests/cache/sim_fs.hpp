// Test support: a tiny copy-on-write host file system in memory. Files are arrays of 4 KiB
// blocks pointing at physical blocks of one device; reflink clones share them; a write to a
// shared block (or to any block in always-CoW mode, like btrfs) goes to a newly allocated block;
// punching frees blocks, which are reused first fit (so stale physical keys would show soon).
// SimBackend serves a file as a BlockBackend; SimResolver answers like FiemapResolver, from a
// copy of the mapping it refreshes only when told (as the real one caches FIEMAP results).
#pragma once

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <vector>

#include "policy/cache/origin_resolver.hpp"
#include "vfilter/block_backend.hpp"

namespace v2p::cache::testing {

inline constexpr std::uint32_t kFsBlock = 4096;
inline constexpr DeviceId kSimDevice = DeviceId::from_major_minor(7, 42);

class SimFs {
 public:
  SimFs(std::uint32_t device_blocks, bool always_cow)
      : data_(std::size_t{device_blocks} * kFsBlock), refs_(device_blocks, 0), cow_(always_cow) {}

  std::size_t create(std::uint64_t bytes) {
    std::lock_guard lock(mu_);
    files_.emplace_back(bytes / kFsBlock);
    return files_.size() - 1;
  }
  std::size_t reflink(std::size_t src) {
    std::lock_guard lock(mu_);
    files_.push_back(files_[src]);
    for (const auto& b : files_.back())
      if (b) ++refs_[*b];
    return files_.size() - 1;
  }
  std::uint64_t size(std::size_t f) const {
    std::lock_guard lock(mu_);
    return files_[f].size() * kFsBlock;
  }

  void read(std::size_t f, std::span<std::byte> out, std::uint64_t off) const {
    std::lock_guard lock(mu_);
    for (std::uint64_t done = 0; done < out.size();) {
      const std::uint64_t pos = off + done, blk = pos / kFsBlock, in = pos % kFsBlock;
      const std::uint64_t n = std::min<std::uint64_t>(kFsBlock - in, out.size() - done);
      const auto& p = files_[f][blk];
      if (p)
        std::memcpy(out.data() + done, &data_[std::size_t{*p} * kFsBlock + in], n);
      else
        std::memset(out.data() + done, 0, n);
      done += n;
    }
  }

  // Like a real allocator, the blocks one write needs anew come as one extent where possible
  // (first fit, lowest address first, so freed blocks are reused soon).
  void write(std::size_t f, std::span<const std::byte> in_data, std::uint64_t off) {
    std::lock_guard lock(mu_);
    const std::uint64_t first = off / kFsBlock, last = (off + in_data.size() - 1) / kFsBlock;
    std::vector<std::uint64_t> fresh;
    for (std::uint64_t b = first; b <= last; ++b) {
      const auto& p = files_[f][b];
      if (!p || refs_[*p] > 1 || cow_) fresh.push_back(b);
    }
    std::vector<std::uint32_t> got = alloc_run(fresh.size());
    for (std::size_t i = 0; i < fresh.size(); ++i) {
      auto& p = files_[f][fresh[i]];
      const std::uint32_t nb = got[i];
      if (p)
        std::memcpy(&data_[std::size_t{nb} * kFsBlock], &data_[std::size_t{*p} * kFsBlock],
                    kFsBlock);
      else
        std::memset(&data_[std::size_t{nb} * kFsBlock], 0, kFsBlock);
      release(p);
      p = nb;
    }
    for (std::uint64_t done = 0; done < in_data.size();) {
      const std::uint64_t pos = off + done, blk = pos / kFsBlock, in = pos % kFsBlock;
      const std::uint64_t n = std::min<std::uint64_t>(kFsBlock - in, in_data.size() - done);
      std::memcpy(&data_[std::size_t{*files_[f][blk]} * kFsBlock + in], in_data.data() + done, n);
      done += n;
    }
  }

  // Whole blocks inside the range become holes; partial blocks are zeroed.
  void punch(std::size_t f, std::uint64_t off, std::uint64_t len) {
    std::uint64_t pos = off;
    const std::uint64_t end = off + len;
    while (pos < end) {
      const std::uint64_t blk = pos / kFsBlock, in = pos % kFsBlock;
      const std::uint64_t n = std::min<std::uint64_t>(kFsBlock - in, end - pos);
      if (in == 0 && n == kFsBlock) {
        std::lock_guard lock(mu_);
        release(files_[f][blk]);
      } else {
        std::vector<std::byte> zero(n);
        write(f, zero, pos);
      }
      pos += n;
    }
  }

  // The file's mapping: physical block per file block.
  std::vector<std::optional<std::uint32_t>> mapping(std::size_t f) const {
    std::lock_guard lock(mu_);
    return files_[f];
  }

 private:
  // n blocks: one run by first fit if there is one, else the lowest free blocks.
  std::vector<std::uint32_t> alloc_run(std::size_t n) {
    std::vector<std::uint32_t> out;
    if (n == 0) return out;
    std::size_t run = 0;
    for (std::uint32_t b = 0; b < refs_.size(); ++b) {
      run = refs_[b] == 0 ? run + 1 : 0;
      if (run == n) {
        for (std::uint32_t x = b + 1 - static_cast<std::uint32_t>(n); x <= b; ++x) out.push_back(x);
        break;
      }
    }
    for (std::uint32_t b = 0; out.size() < n && b < refs_.size(); ++b)
      if (refs_[b] == 0) out.push_back(b);
    if (out.size() < n) throw std::runtime_error("sim fs full");
    for (const auto b : out) refs_[b] = 1;
    return out;
  }
  void release(std::optional<std::uint32_t>& p) {
    if (p) --refs_[*p];
    p.reset();
  }

  mutable std::mutex mu_;
  std::vector<std::byte> data_;
  std::vector<std::uint32_t> refs_;
  std::vector<std::vector<std::optional<std::uint32_t>>> files_;
  bool cow_;
};

class SimBackend final : public vfilter::BlockBackend {
 public:
  SimBackend(std::shared_ptr<SimFs> fs, std::size_t file) : fs_(std::move(fs)), file_(file) {}
  std::uint64_t size() const override { return fs_->size(file_); }
  std::string describe() const override { return "sim file " + std::to_string(file_); }
  int read(const vfilter::IoTarget&, std::span<std::byte> out, std::uint64_t off) override {
    ++reads;
    fs_->read(file_, out, off);
    return 0;
  }
  int write(const vfilter::IoTarget&, std::span<const std::byte> d, std::uint64_t off,
            vfilter::Fua) override {
    fs_->write(file_, d, off);
    return 0;
  }
  int write_zeroes(const vfilter::IoTarget&, std::uint64_t off, std::uint64_t len,
                   vfilter::MayPunch, vfilter::Fua) override {
    fs_->punch(file_, off, len);
    return 0;
  }
  int trim(const vfilter::IoTarget&, std::uint64_t off, std::uint64_t len) override {
    fs_->punch(file_, off, len);
    return 0;
  }
  int flush(const vfilter::IoTarget&) override { return 0; }
  std::atomic<std::uint64_t> reads{0};

 private:
  std::shared_ptr<SimFs> fs_;
  std::size_t file_;
};

class SimResolver final : public OriginResolver {
 public:
  SimResolver(std::shared_ptr<SimFs> fs, std::size_t file)
      : fs_(std::move(fs)), file_(file), map_(fs_->mapping(file)) {}
  std::optional<CacheKey> locate(std::uint64_t off, std::uint64_t len) override {
    std::lock_guard lock(mu_);
    const std::uint64_t first = off / kFsBlock, last = (off + len - 1) / kFsBlock;
    if (off % kFsBlock != 0 || !map_[first]) return std::nullopt;
    for (std::uint64_t b = first + 1; b <= last; ++b)
      if (!map_[b] || *map_[b] != *map_[first] + (b - first)) return std::nullopt;
    return key(*map_[first]);
  }
  std::vector<PhysicalRun> runs(std::uint64_t off, std::uint64_t len) override {
    std::lock_guard lock(mu_);
    std::vector<PhysicalRun> out;
    for (std::uint64_t pos = off; pos < off + len;) {
      const std::uint64_t blk = pos / kFsBlock, in = pos % kFsBlock;
      const std::uint64_t n = std::min<std::uint64_t>(kFsBlock - in, off + len - pos);
      if (map_[blk]) {
        const CacheKey k{kSimDevice,
                         PhysicalSector((std::uint64_t{*map_[blk]} * kFsBlock + in) / kSectorSize)};
        out.push_back({pos, n, k});
      }
      pos += n;
    }
    return out;
  }
  void refresh(std::uint64_t off, std::uint64_t len) override {
    const auto now = fs_->mapping(file_);
    std::lock_guard lock(mu_);
    for (std::uint64_t b = off / kFsBlock; b * kFsBlock < off + len; ++b) map_[b] = now[b];
  }
  static CacheKey key(std::uint32_t phys_block) {
    return {kSimDevice, PhysicalSector(std::uint64_t{phys_block} * kFsBlock / kSectorSize)};
  }

 private:
  std::mutex mu_;
  std::shared_ptr<SimFs> fs_;
  std::size_t file_;
  std::vector<std::optional<std::uint32_t>> map_;
};

inline std::vector<std::byte> random_bytes(std::mt19937_64& rng, std::size_t n) {
  std::vector<std::byte> v(n);
  for (auto& b : v) b = std::byte(rng() & 0xff);
  return v;
}

inline vfilter::IoTarget target(std::string_view vm, std::string_view vdisk) {
  vfilter::IoTarget t;
  t.vm = vm;
  t.vdisk = vdisk;
  return t;
}

}  // namespace v2p::cache::testing
