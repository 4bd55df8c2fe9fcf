#include "correlator/snapshot.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "common/error.hpp"
#include "common/record_file.hpp"

namespace v2p::correlator {
namespace {

// FNV-1a: enough to catch a torn or corrupted file; not a defence against tampering.
std::uint64_t fnv1a(std::span<const std::byte> b) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const auto c : b) h = (h ^ static_cast<std::uint8_t>(c)) * 0x100000001b3ULL;
  return h;
}

class Writer {
 public:
  template <class T>
  void put(const T& v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    out.insert(out.end(), p, p + sizeof v);
  }
  void bytes(std::span<const std::byte> b) {
    put(static_cast<std::uint32_t>(b.size()));
    out.insert(out.end(), b.begin(), b.end());
  }
  std::vector<std::byte> out;
};

class Reader {
 public:
  explicit Reader(std::span<const std::byte> b) : b_(b) {}
  template <class T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }
  std::span<const std::byte> bytes() {
    const auto n = get<std::uint32_t>();
    need(n);
    const auto s = b_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  // A count of items of at least `item_size` bytes each, checked against what is left.
  std::uint64_t count(std::size_t item_size) {
    const auto n = get<std::uint64_t>();
    if (n > (b_.size() - pos_) / item_size) throw Error("map snapshot is truncated or corrupt");
    return n;
  }
  [[nodiscard]] bool at_end() const { return pos_ == b_.size(); }

 private:
  void need(std::size_t n) const {
    if (b_.size() - pos_ < n) throw Error("map snapshot is truncated");
  }
  std::span<const std::byte> b_;
  std::size_t pos_ = 0;
};

// One extent on disk: fixed 48 bytes.
struct DiskExtent {
  std::uint64_t voffset, length, sector, generation, last_seen_ns;
  std::uint32_t device;
  float confidence;
};
static_assert(sizeof(DiskExtent) == 48);

}  // namespace

Snapshot snapshot_of(const Correlator& c) {
  return {c.map(), c.vdisk_declarations(), c.backend_processes(), c.watermark_ns()};
}

std::vector<std::byte> encode_snapshot(const Snapshot& s) {
  Writer w;
  w.out.insert(w.out.end(), reinterpret_cast<const std::byte*>(kSnapshotMagic),
               reinterpret_cast<const std::byte*>(kSnapshotMagic) + sizeof kSnapshotMagic);
  w.put(kSnapshotVersion);
  w.put(s.log_epoch);
  w.put(s.as_of_ns);
  w.put(static_cast<std::uint64_t>(s.declarations.size()));
  for (const auto& d : s.declarations) w.bytes(encode_vdisk_declaration(d));
  w.put(static_cast<std::uint64_t>(s.backends.size()));
  for (const auto t : s.backends) w.put(t);
  const auto keys = s.map.vdisks();
  w.put(static_cast<std::uint64_t>(keys.size()));
  for (const auto key : keys) {
    w.put(key.vm.value());
    w.put(key.vdisk.value());
    const auto extents = s.map.extents(key);
    w.put(static_cast<std::uint64_t>(extents.size()));
    for (const auto& e : extents) {
      w.put(DiskExtent{e.voffset.value(), e.length, e.sector.value(), e.generation, e.last_seen_ns,
                       e.device.kernel(), e.confidence});
    }
  }
  w.put(fnv1a(w.out));
  return std::move(w.out);
}

Snapshot decode_snapshot(std::span<const std::byte> bytes) {
  if (bytes.size() < sizeof kSnapshotMagic + 8 + 8 ||
      std::memcmp(bytes.data(), kSnapshotMagic, sizeof kSnapshotMagic) != 0) {
    throw Error("not a v2p map snapshot");
  }
  const auto body = bytes.first(bytes.size() - 8);
  std::uint64_t sum;
  std::memcpy(&sum, bytes.data() + body.size(), sizeof sum);
  Reader r(body.subspan(sizeof kSnapshotMagic));
  if (const auto v = r.get<std::uint32_t>(); v != kSnapshotVersion) {
    throw Error("map snapshot version " + std::to_string(v) +
                " is not supported (this build reads " + std::to_string(kSnapshotVersion) + ")");
  }
  if (fnv1a(body) != sum) throw Error("map snapshot checksum mismatch (file corrupt or torn)");
  Snapshot s;
  s.log_epoch = r.get<std::uint32_t>();
  s.as_of_ns = r.get<std::uint64_t>();
  for (auto n = r.count(4); n > 0; --n)
    s.declarations.push_back(decode_vdisk_declaration(r.bytes()));
  for (auto n = r.count(4); n > 0; --n) s.backends.push_back(r.get<std::uint32_t>());
  // A vdisk's extents are stored in voffset order: they are restored in bulk (one pass per
  // vdisk, restore_sorted), not one search-and-insert per extent, which made a 1 M-extent
  // restart take seconds.
  std::vector<MappedExtent> extents;
  for (auto nv = r.count(16); nv > 0; --nv) {
    const VdiskKey key{VmId{r.get<std::uint32_t>()}, VdiskId{r.get<std::uint32_t>()}};
    const auto ne = r.count(sizeof(DiskExtent));
    extents.clear();
    extents.reserve(ne);
    for (auto i = ne; i > 0; --i) {
      const auto d = r.get<DiskExtent>();
      extents.push_back({VirtualOffset{d.voffset}, d.length, DeviceId::from_kernel(d.device),
                         PhysicalSector{d.sector}, d.generation, d.last_seen_ns, d.confidence});
    }
    s.map.restore_sorted(key, extents);
  }
  if (!r.at_end()) throw Error("map snapshot has trailing bytes");
  return s;
}

void save_snapshot(const Correlator& c, const std::filesystem::path& path,
                   std::uint32_t log_epoch) {
  auto s = snapshot_of(c);
  s.log_epoch = log_epoch;
  const auto bytes = encode_snapshot(s);
  const auto tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw system_error("cannot create " + tmp);
  std::size_t done = 0;
  while (done < bytes.size()) {
    const auto n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw system_error("cannot write " + tmp, err);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) throw system_error("cannot sync " + tmp);
  std::filesystem::rename(tmp, path);
}

Snapshot load_snapshot(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw Error("cannot open map snapshot " + path.string());
  // One read of the whole file: istreambuf_iterator copied it a character at a time.
  const auto size = static_cast<std::size_t>(in.tellg());
  std::vector<char> raw(size);
  in.seekg(0);
  if (!in.read(raw.data(), static_cast<std::streamsize>(size))) {
    throw Error("cannot read map snapshot " + path.string());
  }
  return decode_snapshot(std::as_bytes(std::span<const char>(raw)));
}

void restore_snapshot(Correlator& c, const Snapshot& s) {
  c.mutable_map() = s.map;
  for (const auto& d : s.declarations) c.declare(d);
  for (const auto t : s.backends) c.add_backend_process(t);
  c.set_watermark_ns(s.as_of_ns);
}

}  // namespace v2p::correlator
