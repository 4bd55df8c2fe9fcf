// Reading a saved V2P map (`v2p map --save-snapshot FILE`) from a policy or tool.
#pragma once

#include <filesystem>
#include <vector>

#include "v2p/export.hpp"
#include "v2p/map.hpp"
#include "v2p/records.hpp"

namespace v2p {

struct MapSnapshot {
  V2PMap map;
  std::vector<VdiskDeclaration> vdisks;  // names for the ids in the map
};

// Throws std::runtime_error (with a sentence saying what is wrong) on a missing, truncated,
// corrupt or newer-version snapshot file.
V2P_API MapSnapshot load_map_snapshot(const std::filesystem::path& path);

}  // namespace v2p
