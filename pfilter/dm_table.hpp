// Device-mapper tables: the model, a parser of `dmsetup table` text (linear and striped targets
// are understood, others are kept as text), and sector mapping through them. The running kernel
// is read through libdevmapper when it has device-mapper.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pfilter/topology.hpp"
#include "v2p/types.hpp"

namespace v2p::pfilter {

struct DmStripe {
  std::string device;        // as written in the table: "8:16" or "/dev/sdb"
  DeviceId id;               // resolved when the table names major:minor (or the node exists)
  std::uint64_t offset = 0;  // sectors
  bool operator==(const DmStripe&) const = default;
};

struct DmTarget {
  std::uint64_t start = 0;          // sectors in the dm device
  std::uint64_t length = 0;         // sectors
  std::string type;                 // "linear", "striped", …
  std::uint64_t chunk_sectors = 0;  // striped only
  std::vector<DmStripe> stripes;    // linear: one; striped: several; others: none
  std::string params;               // the target's arguments, verbatim
  bool operator==(const DmTarget&) const = default;
};

struct DmTable {
  std::vector<DmTarget> targets;  // sorted by start, as the kernel keeps them

  // Where `sector` of the dm device lives, with the run length up to the next target or chunk
  // boundary; nullopt for unmapped sectors or targets the model does not translate.
  [[nodiscard]] std::optional<DeviceRange> map(std::uint64_t sector) const;
  // The text `dmsetup table` would print for it.
  [[nodiscard]] std::string to_text() const;
};

// Parses the lines `dmsetup table <name>` prints ("start length type args…"); a leading
// "name: " as in plain `dmsetup table` is accepted. Throws v2p::Error naming the bad line.
DmTable parse_dm_table(std::string_view text);

// The live table of a dm device through libdevmapper; nullopt when the kernel has no
// device-mapper or no such device.
std::optional<DmTable> read_dm_table(DeviceId dev);

}  // namespace v2p::pfilter
