// The crash-safe metadata store: an append-only log, replayed at open. append() returns only
// after the record is on stable storage (fdatasync), which is the moment a container write is
// acknowledged. A torn tail left by a crash is cut off at open. The log is flock'd, so a second
// process cannot open the same pool and interleave records.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "ec/metadata_log_format.hpp"

namespace v2p::ec {

class MetadataLog {
 public:
  // Opens <dir>/ec.log, creating the directory and a new log (with `new_pool_id`) when absent.
  // Throws v2p::Error when the log is damaged beyond its tail or locked by another process.
  MetadataLog(const std::filesystem::path& dir, std::uint64_t new_pool_id);
  ~MetadataLog();
  MetadataLog(const MetadataLog&) = delete;
  MetadataLog& operator=(const MetadataLog&) = delete;

  [[nodiscard]] std::uint64_t pool_id() const noexcept { return pool_id_; }
  [[nodiscard]] bool created() const noexcept { return created_; }
  // What replay found; only valid right after construction (the pool consumes it).
  [[nodiscard]] std::vector<LogRecord>& replayed() noexcept { return replayed_; }
  // Non-empty when open dropped a torn tail; says where.
  [[nodiscard]] const std::string& dropped_tail() const noexcept { return dropped_tail_; }

  // Appends and fdatasyncs. Throws v2p::Error on failure (nothing may then be acknowledged).
  void append(const LogRecord& record);

 private:
  int fd_ = -1;
  std::uint64_t pool_id_ = 0;
  std::uint64_t size_ = 0;
  bool created_ = false;
  std::vector<LogRecord> replayed_;
  std::string dropped_tail_;
};

// fsync of a directory, so a rename or create inside it survives a crash.
void fsync_directory(const std::filesystem::path& dir);

}  // namespace v2p::ec
