#include "correlator/snapshot.hpp"
#include "v2p/snapshot.hpp"

namespace v2p {

MapSnapshot load_map_snapshot(const std::filesystem::path& path) {
  auto s = correlator::load_snapshot(path);
  return {std::move(s.map), std::move(s.declarations)};
}

}  // namespace v2p
