#include "pool_fixture.hpp"

#include <unistd.h>

#include <fstream>
#include <random>

namespace v2p::ec::testing {

namespace fs = std::filesystem;

TempPool::TempPool(int stores, Layout layout, std::uint32_t container_bytes,
                   std::uint32_t block_bytes) {
  static int serial = 0;
  dir = fs::temp_directory_path() /
        ("v2p-ec-pool." + std::to_string(::getpid()) + "." + std::to_string(serial++));
  fs::remove_all(dir);
  fs::create_directories(dir);
  config.metadata_dir = dir / "meta";
  for (int i = 1; i <= stores; ++i) {
    const auto s = dir / ("store" + std::to_string(i));
    fs::create_directories(s);
    config.stores.push_back({static_cast<std::uint32_t>(i), s});
  }
  config.default_layout = layout;
  config.container_bytes = container_bytes;
  config.block_bytes = block_bytes;
  config.allow_shared_domains = true;  // every directory here is on the same disk
  config.io_threads = 8;
}

TempPool::~TempPool() {
  std::error_code ec;
  fs::remove_all(dir, ec);
}

fs::path TempPool::store(std::uint32_t id) const {
  return dir / ("store" + std::to_string(id));
}

std::vector<fs::path> TempPool::chunk_files(std::uint32_t id) const {
  std::vector<fs::path> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(store(id) / "chunks", ec)) {
    if (e.path().extension() != ".tmp") out.push_back(e.path());
  }
  return out;
}

std::vector<std::uint8_t> pattern(std::uint64_t seed, std::size_t length) {
  std::mt19937_64 gen(seed * 0x9e3779b97f4a7c15ULL + 1);
  std::vector<std::uint8_t> v(length);
  for (std::size_t i = 0; i < length; i += 8) {
    const auto x = gen();
    for (std::size_t j = 0; j < 8 && i + j < length; ++j) {
      v[i + j] = static_cast<std::uint8_t>(x >> (8 * j));
    }
  }
  return v;
}

const char* to_string(Damage d) {
  switch (d) {
    case Damage::kDeleteChunks:
      return "delete chunks";
    case Damage::kCorruptPayload:
      return "corrupt payload";
    case Damage::kCorruptHeader:
      return "corrupt header";
    case Damage::kTruncate:
      return "truncate";
    case Damage::kDirectoryGone:
      return "directory gone";
    case Damage::kEmptyDirectory:
      return "empty directory";
  }
  return "?";
}

namespace {

void flip(const fs::path& f, std::uint64_t at) {
  std::fstream io(f, std::ios::in | std::ios::out | std::ios::binary);
  io.seekg(static_cast<std::streamoff>(at));
  char c = 0;
  io.get(c);
  io.seekp(static_cast<std::streamoff>(at));
  io.put(static_cast<char>(c ^ 0x40));
}

}  // namespace

void damage(const TempPool& pool, std::uint32_t store, Damage how) {
  const auto root = pool.store(store);
  switch (how) {
    case Damage::kDeleteChunks:
      for (const auto& f : pool.chunk_files(store)) fs::remove(f);
      break;
    case Damage::kCorruptPayload:
      for (const auto& f : pool.chunk_files(store)) flip(f, 64 + (fs::file_size(f) - 64) / 2);
      break;
    case Damage::kCorruptHeader:
      for (const auto& f : pool.chunk_files(store)) flip(f, 30);
      break;
    case Damage::kTruncate:
      for (const auto& f : pool.chunk_files(store)) fs::resize_file(f, fs::file_size(f) / 2);
      break;
    case Damage::kDirectoryGone:
      fs::remove_all(root);
      break;
    case Damage::kEmptyDirectory:
      fs::remove_all(root);
      fs::create_directories(root);
      break;
  }
}

StoreBackup::StoreBackup(const TempPool& pool, std::vector<std::uint32_t> stores)
    : pool_(pool), stores_(std::move(stores)) {
  for (auto s : stores_) {
    const auto b = pool_.dir / ("backup" + std::to_string(s));
    fs::remove_all(b);
    fs::copy(pool_.store(s), b, fs::copy_options::recursive);
  }
}

void StoreBackup::restore() const {
  for (auto s : stores_) {
    fs::remove_all(pool_.store(s));
    fs::copy(pool_.dir / ("backup" + std::to_string(s)), pool_.store(s),
             fs::copy_options::recursive);
  }
}

}  // namespace v2p::ec::testing
