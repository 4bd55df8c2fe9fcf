#include "vfilter/nbd_block_status.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "vfilter/nbd_structured_reply.hpp"

namespace v2p::vfilter {

std::vector<Extent> allocation_extents(int fd, std::uint64_t offset, std::uint64_t length,
                                       std::uint64_t size, std::size_t max_extents) {
  std::vector<Extent> out;
  const std::uint64_t end =
      std::min(size, offset + std::min(length, size - std::min(size, offset)));
  if (end <= offset) return out;
  const auto add = [&](std::uint64_t len, std::uint32_t flags) {
    if (!out.empty() && out.back().flags == flags) {
      out.back().length += len;
    } else {
      out.push_back({len, flags});
    }
  };
  const auto unknown = [&] { return std::vector<Extent>{{end - offset, 0}}; };
  if (fd < 0) return unknown();
  constexpr std::uint32_t kHole = nbd::kStateHole | nbd::kStateZero;
  std::uint64_t pos = offset;
  while (pos < end && out.size() < std::max<std::size_t>(max_extents, 1)) {
    off_t data = ::lseek(fd, static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0) {
      if (errno != ENXIO) return out.empty() ? unknown() : out;
      data = static_cast<off_t>(end);  // no data after pos: a hole to the end of the file
    }
    const std::uint64_t data_at = std::min<std::uint64_t>(static_cast<std::uint64_t>(data), end);
    if (data_at > pos) {
      add(data_at - pos, kHole);
      pos = data_at;
      continue;
    }
    const off_t hole = ::lseek(fd, static_cast<off_t>(pos), SEEK_HOLE);
    if (hole < 0) return out.empty() ? unknown() : out;
    // SEEK_HOLE never returns pos itself here (pos is in data); guard against a racing punch.
    const std::uint64_t hole_at =
        std::clamp<std::uint64_t>(static_cast<std::uint64_t>(hole), pos + 1, end);
    add(hole_at - pos, 0);
    pos = hole_at;
  }
  return out;
}

}  // namespace v2p::vfilter
