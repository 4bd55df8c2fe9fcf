// CPU cost of the cache stage per request when it cannot help (admission off: every block is
// looked up, counted by the sketch and read from the origin), measured against a null origin so
// the device does not hide it. The resolver is the real FiemapResolver on a real file.
//
//   cache_stage_overhead FILE [--bs BYTES] [--requests N] [--threads N]
//
// FILE: an existing image (its layout is read with FIEMAP); a cache file is created beside it
// and removed. Prints ns per request through the null origin alone and through the cache stage.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "policy/cache/cache_stage.hpp"

namespace {

class NullOrigin final : public v2p::vfilter::BlockBackend {
 public:
  explicit NullOrigin(std::uint64_t size) : size_(size) {}
  std::uint64_t size() const override { return size_; }
  std::string describe() const override { return "null"; }
  int read(const v2p::vfilter::IoTarget&, std::span<std::byte> out, std::uint64_t) override {
    std::memset(out.data(), 0, out.size());
    return 0;
  }
  int write(const v2p::vfilter::IoTarget&, std::span<const std::byte>, std::uint64_t,
            v2p::vfilter::Fua) override {
    return 0;
  }
  int write_zeroes(const v2p::vfilter::IoTarget&, std::uint64_t, std::uint64_t,
                   v2p::vfilter::MayPunch, v2p::vfilter::Fua) override {
    return 0;
  }
  int trim(const v2p::vfilter::IoTarget&, std::uint64_t, std::uint64_t) override { return 0; }
  int flush(const v2p::vfilter::IoTarget&) override { return 0; }

 private:
  std::uint64_t size_;
};

double ns_per_request(v2p::vfilter::BlockBackend& b, std::uint32_t bs, std::uint64_t requests,
                      unsigned threads) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      std::mt19937_64 rng(t + 1);
      std::vector<std::byte> buf(bs);
      v2p::vfilter::IoTarget who;
      who.vm = "bench";
      who.vdisk = "disk";
      const std::uint64_t blocks = b.size() / bs;
      for (std::uint64_t i = 0; i < requests / threads; ++i) {
        if (b.read(who, buf, (rng() % blocks) * bs) != 0) std::abort();
      }
    });
  }
  for (auto& t : ts) t.join();
  const auto ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - start);
  return ns.count() * threads / double(requests);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE [--bs BYTES] [--requests N] [--threads N]\n", argv[0]);
    return 2;
  }
  const std::filesystem::path image = argv[1];
  std::uint32_t bs = 4096;
  std::uint64_t requests = 1'000'000;
  unsigned threads = 1;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--bs")
      bs = static_cast<std::uint32_t>(std::strtoul(argv[i + 1], nullptr, 10));
    else if (k == "--requests")
      requests = std::strtoull(argv[i + 1], nullptr, 10);
    else if (k == "--threads")
      threads = static_cast<unsigned>(std::strtoul(argv[i + 1], nullptr, 10));
  }
  const std::uint64_t size = std::filesystem::file_size(image);
  const auto cache_file = image.parent_path() / (image.filename().string() + ".overhead-cache");
  double plain = 0, staged = 0;
  {
    v2p::cache::FlashCacheOptions o;
    o.file = cache_file;
    o.size_bytes = 64ULL << 20;
    o.min_frequency = 1000;  // admits nothing
    auto cache = std::make_shared<v2p::cache::FlashCache>(o);
    auto origin = std::make_shared<NullOrigin>(size);
    v2p::cache::CacheStage stage(cache, origin, std::make_unique<v2p::cache::FiemapResolver>(image),
                                 "disk");
    ns_per_request(stage, bs, requests / 10, threads);  // warm: layout learnt, sketch sized
    for (int rep = 0; rep < 3; ++rep) {
      const double p = ns_per_request(*origin, bs, requests, threads);
      const double s = ns_per_request(stage, bs, requests, threads);
      std::printf("rep %d: null origin %.0f ns/request, through the cache stage %.0f ns/request\n",
                  rep + 1, p, s);
      plain = rep == 0 ? p : std::min(plain, p);
      staged = rep == 0 ? s : std::min(staged, s);
    }
    const auto st = cache->vm_stats("bench");
    std::printf("best of 3: stage adds %.0f ns per %u-byte read (%lu misses, %lu entries)\n",
                staged - plain, bs, st ? st->misses : 0UL, cache->entries());
  }
  std::filesystem::remove(cache_file);
  return 0;
}
