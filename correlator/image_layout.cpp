#include "correlator/image_layout.hpp"

#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/host_layout/unique_fd.hpp"
#include "common/subprocess.hpp"

namespace v2p::correlator {
namespace {

// The file opened read-only, owned; throws with the path on failure.
host_layout::UniqueFd open_read(const std::filesystem::path& p) {
  host_layout::UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw system_error("cannot open " + p.string());
  return fd;
}

}  // namespace

std::vector<LayoutExtent> fiemap(const std::filesystem::path& file) {
  const auto fd = open_read(file);
  std::vector<LayoutExtent> out;
  const bool ok = walk_fiemap(fd.get(), 0, FIEMAP_MAX_OFFSET, true, [&](const FiemapExtent& x) {
    if (x.placeable) out.push_back({x.logical, x.length, x.physical, x.unwritten});
  });
  if (!ok) throw system_error("FIEMAP of " + file.string() + " failed");
  return out;
}

bool on_btrfs(const std::filesystem::path& path) {
  struct statfs st {};
  if (::statfs(path.c_str(), &st) != 0) throw system_error("cannot statfs " + path.string());
  return static_cast<unsigned long>(st.f_type) == BTRFS_SUPER_MAGIC;
}

std::vector<BtrfsChunk> btrfs_chunks(const std::filesystem::path& path) {
  const auto fd = open_read(path);
  std::vector<BtrfsChunk> out;
  btrfs_ioctl_search_args args{};
  auto& k = args.key;
  k.tree_id = BTRFS_CHUNK_TREE_OBJECTID;
  k.min_objectid = k.max_objectid = BTRFS_FIRST_CHUNK_TREE_OBJECTID;
  k.min_type = k.max_type = BTRFS_CHUNK_ITEM_KEY;
  k.min_offset = 0;
  k.max_offset = UINT64_MAX;
  k.min_transid = 0;
  k.max_transid = UINT64_MAX;
  for (;;) {
    k.nr_items = 4096;
    if (::ioctl(fd.get(), BTRFS_IOC_TREE_SEARCH, &args) != 0) {
      throw system_error("btrfs chunk tree search on " + path.string() + " failed (needs root)");
    }
    if (k.nr_items == 0) break;
    std::size_t pos = 0;
    std::uint64_t last_offset = 0;
    for (std::uint32_t i = 0; i < k.nr_items; ++i) {
      btrfs_ioctl_search_header h{};
      std::memcpy(&h, args.buf + pos, sizeof h);
      pos += sizeof h;
      if (h.type == BTRFS_CHUNK_ITEM_KEY && h.len >= sizeof(btrfs_chunk)) {
        btrfs_chunk c{};
        std::memcpy(&c, args.buf + pos, sizeof c);
        out.push_back({h.offset, c.length, c.stripe.offset, c.stripe.devid, c.type, c.num_stripes});
      }
      pos += h.len;
      last_offset = h.offset;
    }
    if (last_offset == UINT64_MAX) break;
    k.min_offset = last_offset + 1;
  }
  std::sort(out.begin(), out.end(),
            [](const BtrfsChunk& a, const BtrfsChunk& b) { return a.logical < b.logical; });
  return out;
}

std::vector<LayoutExtent> btrfs_to_device(const std::vector<LayoutExtent>& logical,
                                          const std::vector<BtrfsChunk>& chunks) {
  std::vector<LayoutExtent> out;
  for (const auto& e : logical) {
    std::uint64_t done = 0;
    while (done < e.length) {
      const std::uint64_t addr = e.device_offset + done;
      auto it =
          std::upper_bound(chunks.begin(), chunks.end(), addr,
                           [](std::uint64_t a, const BtrfsChunk& c) { return a < c.logical; });
      if (it == chunks.begin() || addr >= std::prev(it)->logical + std::prev(it)->length) {
        throw Error("btrfs logical address " + std::to_string(addr) + " is in no chunk");
      }
      const BtrfsChunk& c = *std::prev(it);
      const std::uint64_t n = std::min(e.length - done, c.logical + c.length - addr);
      out.push_back({e.logical + done, n, c.device_offset + (addr - c.logical), e.unwritten});
      done += n;
    }
  }
  return out;
}

std::vector<LayoutExtent> file_layout(const std::filesystem::path& file) {
  auto extents = fiemap(file);
  if (on_btrfs(file)) extents = btrfs_to_device(extents, btrfs_chunks(file));
  return extents;
}

bool is_qcow2(const std::filesystem::path& image) {
  std::ifstream in(image, std::ios::binary);
  char magic[4] = {};
  in.read(magic, sizeof magic);
  return in.gcount() == 4 && std::memcmp(magic, "QFI\xfb", 4) == 0;
}

std::vector<LayoutExtent> image_layout(const std::filesystem::path& image) {
  if (!is_qcow2(image)) return file_layout(image);
  const auto json = nlohmann::json::parse(
      run_checked({"qemu-img", "map", "--output=json", "-U", "-f", "qcow2", image.string()}));
  const auto file = file_layout(image);
  std::vector<LayoutExtent> out;
  for (const auto& m : json) {
    if (!m.value("data", false) || !m.contains("offset") || m.value("depth", 0) != 0) continue;
    const std::uint64_t guest = m.at("start"), len = m.at("length"), foff = m.at("offset");
    // Compose guest → file offset with file offset → device.
    for (const auto& f : file) {
      const std::uint64_t a = std::max(foff, f.logical),
                          b = std::min(foff + len, f.logical + f.length);
      if (a >= b) continue;
      out.push_back({guest + (a - foff), b - a, f.device_offset + (a - f.logical), f.unwritten});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const LayoutExtent& x, const LayoutExtent& y) { return x.logical < y.logical; });
  return out;
}

}  // namespace v2p::correlator
