// Map snapshots: the V2P map, the vdisk names and backend processes, and the stream time they
// cover, in a versioned, checksummed binary file (docs/correlator.md, "Snapshot format"), so the
// map survives a restart: load the snapshot, then replay the streams recorded after it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

#include "correlator/correlator.hpp"

namespace v2p::correlator {

inline constexpr char kSnapshotMagic[8] = {'V', '2', 'P', 'M', 'A', 'P', '\0', '\0'};
inline constexpr std::uint32_t kSnapshotVersion = 1;

struct Snapshot {
  V2PMap map;
  std::vector<VdiskDeclaration> declarations;
  std::vector<std::uint32_t> backends;
  std::uint64_t as_of_ns = 0;  // stream time the map covers (replay resumes after it)
  // Which change log continues this snapshot (the agent's map.log, agent/map_log.hpp); stored in
  // the header word version-1 readers skip, so older snapshots read as epoch 0.
  std::uint32_t log_epoch = 0;
};

Snapshot snapshot_of(const Correlator& c);
std::vector<std::byte> encode_snapshot(const Snapshot& s);
// Throws v2p::Error on a truncated, corrupt or unsupported snapshot.
Snapshot decode_snapshot(std::span<const std::byte> bytes);

// Writes atomically (temporary file, fsync, rename), mode 0600: a reader never sees a partial
// snapshot, which is what lets `v2p map --snapshot` query a running chain. Throws v2p::Error.
void save_snapshot(const Correlator& c, const std::filesystem::path& path,
                   std::uint32_t log_epoch = 0);
Snapshot load_snapshot(const std::filesystem::path& path);
// Puts a snapshot into a fresh correlator (map, names, backends, watermark).
void restore_snapshot(Correlator& c, const Snapshot& s);

}  // namespace v2p::correlator
