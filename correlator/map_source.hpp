// Where the CLI's map comes from: a snapshot, recorded stream files, or a snapshot followed by
// the streams recorded after it. Also the small parsers the map subcommands share.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "correlator/correlator.hpp"

namespace v2p::correlator {

struct MapSource {
  std::vector<std::filesystem::path> streams;
  std::optional<std::filesystem::path> snapshot;
  std::vector<std::uint32_t> backends;  // opaque backend processes (completion-window join)
};

// Throws v2p::Error when neither a snapshot nor a stream is given, or one cannot be read.
std::unique_ptr<Correlator> load_map(const MapSource& source);

// "7:0", "/dev/loop0" (a block device node) → DeviceId. Throws v2p::Error.
DeviceId parse_device(const std::string& text);

// The block device holding the file system that contains `path` (from /proc/self/mountinfo,
// so it is right on btrfs too, whose st_dev is an anonymous device). Throws v2p::Error.
DeviceId filesystem_device(const std::filesystem::path& path);

// The vdisks to act on: those matching vm / vdisk (names or numeric ids; empty = any).
// Throws v2p::Error naming the known vdisks when nothing matches.
std::vector<VdiskKey> select_vdisks(const Correlator& c, const std::string& vm,
                                    const std::string& vdisk);

// "vm/vdisk" from the declarations, or "vm<id>/vdisk<id>".
std::string vdisk_label(const Correlator& c, VdiskKey key);

}  // namespace v2p::correlator
