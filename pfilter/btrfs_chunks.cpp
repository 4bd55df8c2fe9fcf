#include "pfilter/btrfs_chunks.hpp"

#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstring>
#include <limits>
#include <memory>

#include "common/error.hpp"

namespace v2p::pfilter {
namespace {

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  [[nodiscard]] int get() const { return fd_; }

 private:
  int fd_;
};

std::vector<BtrfsChunk> read_chunks(int fd) {
  std::vector<BtrfsChunk> chunks;
  auto args = std::make_unique<btrfs_ioctl_search_args>();
  std::uint64_t min_offset = 0;
  for (;;) {
    std::memset(args.get(), 0, sizeof *args);
    auto& key = args->key;
    key.tree_id = BTRFS_CHUNK_TREE_OBJECTID;
    key.min_objectid = key.max_objectid = BTRFS_FIRST_CHUNK_TREE_OBJECTID;
    key.min_type = key.max_type = BTRFS_CHUNK_ITEM_KEY;
    key.min_offset = min_offset;
    key.max_offset = std::numeric_limits<std::uint64_t>::max();
    key.max_transid = std::numeric_limits<std::uint64_t>::max();
    key.nr_items = 4096;
    if (::ioctl(fd, BTRFS_IOC_TREE_SEARCH, args.get()) != 0) {
      throw system_error("BTRFS_IOC_TREE_SEARCH on the chunk tree");
    }
    if (key.nr_items == 0) break;
    std::size_t pos = 0;
    for (std::uint32_t i = 0; i < key.nr_items; ++i) {
      btrfs_ioctl_search_header h;
      std::memcpy(&h, args->buf + pos, sizeof h);
      pos += sizeof h;
      if (h.type == BTRFS_CHUNK_ITEM_KEY && h.len >= sizeof(btrfs_chunk)) {
        btrfs_chunk c;
        std::memcpy(&c, args->buf + pos, sizeof c);
        BtrfsChunk chunk{h.offset, c.length, c.stripe_len, c.type, c.sub_stripes, {}};
        for (std::uint16_t s = 0; s < c.num_stripes; ++s) {
          btrfs_stripe st;
          const std::size_t at = offsetof(btrfs_chunk, stripe) + s * sizeof(btrfs_stripe);
          if (at + sizeof st > h.len) break;
          std::memcpy(&st, args->buf + pos + at, sizeof st);
          chunk.stripes.push_back({st.devid, st.offset});
        }
        chunks.push_back(std::move(chunk));
      }
      pos += h.len;
      min_offset = h.offset + 1;
    }
  }
  return chunks;
}

std::map<std::uint64_t, DeviceId> read_devices(int fd) {
  btrfs_ioctl_fs_info_args fs{};
  if (::ioctl(fd, BTRFS_IOC_FS_INFO, &fs) != 0) throw system_error("BTRFS_IOC_FS_INFO");
  std::map<std::uint64_t, DeviceId> devices;
  for (std::uint64_t id = 1; id <= fs.max_id; ++id) {
    btrfs_ioctl_dev_info_args dev{};
    dev.devid = id;
    if (::ioctl(fd, BTRFS_IOC_DEV_INFO, &dev) != 0) continue;  // holes in devid numbering
    struct stat st {};
    if (::stat(reinterpret_cast<const char*>(dev.path), &st) == 0 && S_ISBLK(st.st_mode)) {
      devices[id] = DeviceId::from_major_minor(major(st.st_rdev), minor(st.st_rdev));
    }
  }
  return devices;
}

}  // namespace

BtrfsChunkMap::BtrfsChunkMap(std::vector<BtrfsChunk> chunks,
                             std::map<std::uint64_t, DeviceId> devices)
    : devices_(std::move(devices)) {
  for (auto& c : chunks) chunks_.emplace(c.logical, std::move(c));
}

BtrfsChunkMap BtrfsChunkMap::load(const std::filesystem::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) throw system_error("cannot open " + path.string());
  return BtrfsChunkMap(read_chunks(fd.get()), read_devices(fd.get()));
}

BtrfsLocation BtrfsChunkMap::map(std::uint64_t logical) const {
  auto it = chunks_.upper_bound(logical);
  if (it == chunks_.begin())
    throw Error("btrfs logical address " + std::to_string(logical) + " is in no chunk");
  const BtrfsChunk& c = (--it)->second;
  const std::uint64_t off = logical - c.logical;
  if (off >= c.length || c.stripes.empty()) {
    throw Error("btrfs logical address " + std::to_string(logical) + " is in no chunk");
  }
  if (c.type & (BTRFS_BLOCK_GROUP_RAID5 | BTRFS_BLOCK_GROUP_RAID6)) {
    throw Error("btrfs RAID5/6 chunks are not supported by the v2p mapper");
  }
  std::size_t index = 0;
  std::uint64_t dev_off = off;
  std::uint64_t run = c.length - off;
  const bool raid0 = c.type & BTRFS_BLOCK_GROUP_RAID0;
  const bool raid10 = c.type & BTRFS_BLOCK_GROUP_RAID10;
  if ((raid0 || raid10) && c.stripe_len != 0) {
    // Data rotates over the stripe sets in stripe_len units; RAID10 mirrors each set.
    const std::uint64_t copies = raid10 && c.sub_stripes ? c.sub_stripes : 1;
    const std::uint64_t sets = c.stripes.size() / copies;
    const std::uint64_t nr = off / c.stripe_len;
    index = static_cast<std::size_t>((nr % sets) * copies);
    dev_off = (nr / sets) * c.stripe_len + off % c.stripe_len;
    run = c.stripe_len - off % c.stripe_len;
  }
  const BtrfsStripe& s = c.stripes[index];
  const auto dev = devices_.find(s.devid);
  if (dev == devices_.end())
    throw Error("btrfs device id " + std::to_string(s.devid) + " has no block device");
  return {dev->second, s.offset + dev_off, run};
}

}  // namespace v2p::pfilter
