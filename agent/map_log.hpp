// The agent's map-change log (docs/agent.md, "Persistence"): what the correlator changed in the
// map since the last snapshot, appended as CRC-checked frames to <state>/map.log, so a kill -9
// loses at most the last unflushed batch instead of everything since the last snapshot.
// Layout (little endian):
//   header : magic "V2PMLOG\0" (8 bytes), u32 version, u32 epoch
//   records: frame::FrameHeader (u16 type, u16 reserved, u32 payload length), payload,
//            u32 CRC-32C of header and payload
// The epoch ties the log to the snapshot it continues: a snapshot saved with log_epoch E is
// continued by the log whose header says E. Rotation saves the snapshot with E + 1 first, then
// replaces the log with an empty one of epoch E + 1; a crash between the two leaves a log of
// epoch E next to a snapshot of E + 1, which replay skips as already contained.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "common/record_file.hpp"
#include "v2p/map.hpp"
#include "v2p/policy.hpp"

namespace v2p::agent {

inline constexpr char kMapLogMagic[8] = {'V', '2', 'P', 'M', 'L', 'O', 'G', '\0'};
inline constexpr std::uint32_t kMapLogVersion = 1;

// What replay hands back: the map changes go straight into the map, the rest to the agent.
struct MapLogSink {
  V2PMap& map;
  std::function<void(const VdiskDeclaration&)> declare;
  std::function<void(std::uint32_t tgid)> backend;
};

struct MapLogReplay {
  bool matched = false;        // the log continues the snapshot (same epoch)
  std::uint64_t records = 0;   // applied
  std::uint64_t bad_tail = 0;  // bytes cut off after the last good record (torn or corrupt)
  std::string why;             // what ended the replay early, "" when it read to the end
};

// Applies the records of the log at `path` that continue a snapshot of `epoch`, up to the
// first torn or corrupt record, and truncates the file there (the writer appends after it).
// A missing file is an empty log. Throws v2p::Error only when the file cannot be read or cut.
MapLogReplay replay_map_log(const std::filesystem::path& path, std::uint32_t epoch,
                            const MapLogSink& sink);

class MapLogWriter {
 public:
  // With `append` (replay_map_log matched the epoch and cut any bad tail), appends to the log at
  // `path`; else replaces it with an empty one of `epoch`. Throws v2p::Error.
  MapLogWriter(std::filesystem::path path, std::uint32_t epoch, bool append);
  ~MapLogWriter();
  MapLogWriter(const MapLogWriter&) = delete;
  MapLogWriter& operator=(const MapLogWriter&) = delete;

  // Buffered in memory: nothing reaches the file before flush().
  void change(const MapChange& c, std::uint64_t last_seen_ns, float confidence);
  void declare(const VdiskDeclaration& d);
  void backend(std::uint32_t tgid);
  void drop(VdiskKey vdisk);

  // One write(2) of the buffered records (survives a kill -9 from here on); `durable` adds an
  // fdatasync (survives a host crash). Throws v2p::Error; the buffer is kept for a retry.
  void flush(bool durable);
  // Replaces the log with an empty one of `epoch` (atomically: temporary file, rename), after
  // the snapshot of that epoch is on disk. Buffered records are dropped: the snapshot has them.
  // When it fails, the next flush() retries it before writing anything.
  void rotate(std::uint32_t epoch);

  [[nodiscard]] std::uint32_t epoch() const noexcept { return epoch_; }
  [[nodiscard]] std::size_t buffered() const noexcept { return buf_.size(); }

 private:
  void put(std::uint16_t type, std::span<const std::byte> payload);
  void open_fresh(std::uint32_t epoch);

  std::filesystem::path path_;
  std::uint32_t epoch_ = 0;
  int fd_ = -1;
  bool stale_ = false;  // fd_ is a log of an older epoch than epoch_
  std::vector<std::byte> buf_;
};

}  // namespace v2p::agent
