// The one parser of /proc/PID/mountinfo (proc(5)): which file system is mounted where, from
// which source, with which device number. Used to find the block device under a file (btrfs and
// other anonymous st_dev), the file system type of a device, and the mount holding a path.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace v2p::host_layout {

struct MountEntry {
  unsigned major = 0;  // field 3, major:minor of st_dev for files on this mount
  unsigned minor = 0;
  std::string root;         // field 4: the directory of the file system mounted here
  std::string mount_point;  // field 5, unescaped (\040 is a space)
  std::string fs_type;      // after the "-" separator
  std::string source;       // e.g. /dev/vda1, or "none"
};

// One line; nullopt when it is not a mountinfo line (too few fields, no "-", bad major:minor).
std::optional<MountEntry> parse_mountinfo_line(std::string_view line);
// Every well-formed line of `text`, in order; malformed lines are skipped.
std::vector<MountEntry> parse_mountinfo(std::string_view text);
// The file (default this process's view); empty when it cannot be read.
std::vector<MountEntry> read_mountinfo(const std::filesystem::path& file = "/proc/self/mountinfo");

// The last-mounted entry with the longest mount point holding `canonical_path` (a path without
// "..", symlinks resolved); null when none does.
const MountEntry* mount_holding(const std::vector<MountEntry>& mounts,
                                std::string_view canonical_path);

}  // namespace v2p::host_layout
