// The host flash cache: a cache file (or device) of fixed-size blocks holding copies of origin
// data keyed by physical location, shared by every vdisk served through a CacheStage on it.
// This is the mechanism (dm-cache style): it moves data between the origin and flash and keeps
// the entries honest; CacheDirectory decides what to keep. docs/cache.md has the design.
//
// Threads: thread-safe; the stages call it from the export's worker threads concurrently. One
// mutex guards the directory; no I/O is done while holding it.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "policy/cache/cache_directory.hpp"
#include "policy/cache/cache_format.hpp"
#include "v2p/cache.hpp"
#include "v2p/policy.hpp"

namespace v2p::cache {

class CacheStage;

enum class WriteMode : std::uint8_t {
  kWriteThrough,  // writes go to the origin, and whole written blocks into the cache
  kWriteAround,   // writes go to the origin only; the blocks they touch are dropped
};

// "write-through" / "write-around"; throws v2p::Error otherwise.
WriteMode parse_write_mode(std::string_view text);

using AdmitHook = std::function<Admission(const IoEvent&)>;

struct FlashCacheOptions {
  std::filesystem::path file;    // created when absent; a block device is used as it is
  std::uint64_t size_bytes = 0;  // 0: the file's (device's) current size
  std::uint32_t block_bytes = 64 << 10;
  WriteMode write_mode = WriteMode::kWriteThrough;
  AdmissionFilter filter = AdmissionFilter::kFrequency;
  unsigned min_frequency = 2;
  std::vector<std::pair<std::string, std::uint64_t>> quotas;  // VM name, bytes
  std::vector<std::pair<std::string, int>> priorities;        // VM name, class of service
  bool direct_io = true;  // O_DIRECT on the cache file where the file system supports it
  // Whether entries outlive the process (taken back at open, recorded at close). The stack
  // builder turns it off when a tier sits below the cache: entries are keyed by the image's
  // physical layout, which a tier's fast file bypasses, so they are only right for this run's
  // vdisk and must not reach a later run or a reflinked clone.
  bool persistent = true;
  AdmitHook admit;  // asked on every admissible miss after the filter's counting; optional
};

// What opening the cache found.
struct RestoreReport {
  bool clean = false;           // the file was closed cleanly last time
  std::uint64_t restored = 0;   // entries taken back
  std::uint64_t discarded = 0;  // headers that failed their checks
};

class FlashCache final : public CacheControl {
 public:
  // Opens (or creates) the cache file and takes back the entries of the last clean shutdown.
  // Throws v2p::Error with a sentence saying what to fix.
  explicit FlashCache(FlashCacheOptions options);
  // close()s.
  ~FlashCache() override;
  FlashCache(const FlashCache&) = delete;
  FlashCache& operator=(const FlashCache&) = delete;

  // Records the valid entries and marks the file clean, so the next open keeps them. After a
  // crash (no close) the next open starts empty: entries are only trusted after a clean close.
  // Idempotent; the stages must be idle.
  void close();

  [[nodiscard]] const RestoreReport& restore_report() const noexcept { return restore_; }
  [[nodiscard]] const Geometry& geometry() const noexcept { return geometry_; }
  [[nodiscard]] WriteMode write_mode() const noexcept { return opts_.write_mode; }
  // Installs (or clears) the admission hook; safe while I/O runs.
  void set_admit_hook(AdmitHook hook);

  // CacheControl
  std::uint64_t capacity_bytes() const override;
  std::uint32_t block_bytes() const override { return geometry_.block_bytes; }
  std::uint64_t entries() const override;
  std::vector<std::string> vms() const override;
  std::optional<CacheVmStats> vm_stats(std::string_view vm) const override;
  void set_quota(std::string_view vm, std::uint64_t bytes) override;
  void set_priority(std::string_view vm, int priority) override;
  std::uint64_t invalidate(std::string_view vdisk, VirtualOffset offset,
                           std::uint64_t length) override;

  // Every key the directory holds, in order (tests and `v2p serve` status).
  [[nodiscard]] std::vector<CacheKey> keys() const;
  // Directory invariants (tests); nullopt when all hold.
  [[nodiscard]] std::optional<std::string> check() const;

 private:
  friend class CacheStage;

  void open_file();
  void restore();
  void attach(const std::string& vdisk, CacheStage* stage);
  void detach(const std::string& vdisk, CacheStage* stage);
  // Reads slot into buf (kHeaderBytes + block_bytes, aligned); 0 or -errno.
  int read_slot(CacheSlot slot, std::byte* buf) const;
  int write_slot(CacheSlot slot, const std::byte* buf) const;

  FlashCacheOptions opts_;
  Geometry geometry_;
  int fd_ = -1;
  bool closed_ = false;
  RestoreReport restore_;

  mutable std::mutex mu_;  // everything below
  CacheDirectory dir_;
  std::shared_ptr<const AdmitHook> admit_;  // null: none
  std::multimap<std::string, CacheStage*> stages_;
  // Write sequence for the stages' fill checks: changed under mu_, read without it by a read
  // planning a block (before it asks the resolver).
  std::atomic<std::uint64_t> seq_{0};
};

}  // namespace v2p::cache
