#include "correlator/sim/host_fs_sim.hpp"

#include <algorithm>
#include <random>
#include <set>

#include "common/error.hpp"
#include "common/record_file.hpp"
#include "correlator/bio.hpp"
#include "v2p/tag.hpp"

namespace v2p::correlator::sim {
namespace {

constexpr std::uint32_t kVfilterTgid = 4100;
constexpr std::uint32_t kBackendTgid = 4200;
constexpr std::uint32_t kJournalTgid = 313;  // jbd2
constexpr std::uint64_t kSectorsPerBlock = kBlock / 512;
// The other bi_opf flags the simulated metadata bios carry (positions of 6.18, docs/formats.md).
constexpr std::uint32_t kReqFua = 1u << 17;
constexpr std::uint32_t kReqPreflush = 1u << 18;

// Block allocator of the data region with a moving cursor, random jumps (fragmentation) and a
// quarantine for freed blocks (file systems do not reuse blocks freed in an uncommitted
// transaction).
class Allocator {
 public:
  Allocator(std::uint64_t base, std::uint64_t blocks, std::mt19937_64& rng)
      : base_(base), used_(blocks, 0), rng_(rng) {}

  std::uint64_t alloc(double fragmentation) {
    const std::uint64_t n = used_.size();
    if (std::uniform_real_distribution<double>(0, 1)(rng_) < fragmentation) cursor_ = rng_() % n;
    for (std::uint64_t k = 0; k < n; ++k) {
      const std::uint64_t b = (cursor_ + k) % n;
      if (used_[b] == 0) {
        used_[b] = 1;
        cursor_ = b + 1;
        return base_ + b;
      }
    }
    throw Error("simulated device is full; give it more blocks");
  }
  void free_at(std::uint64_t block, std::uint64_t when) { quarantine_.insert({when, block}); }
  void release(std::uint64_t now) {
    while (!quarantine_.empty() && quarantine_.begin()->first <= now) {
      used_[quarantine_.begin()->second - base_] = 0;
      quarantine_.erase(quarantine_.begin());
    }
  }

 private:
  std::uint64_t base_;
  std::vector<std::uint8_t> used_;
  std::mt19937_64& rng_;
  std::uint64_t cursor_ = 0;
  std::multiset<std::pair<std::uint64_t, std::uint64_t>> quarantine_;
};

struct InFlight {
  std::uint64_t complete;
  std::uint16_t slot;
  std::size_t vdisk;
  std::uint64_t vb0, n;
  std::vector<std::uint64_t> to_free;
};

class Simulator {
 public:
  explicit Simulator(const SimOptions& o)
      : o_(o), rng_(o.seed), alloc_(o.meta_blocks, o.device_blocks, rng_) {
    out_.device = DeviceId::from_major_minor(7, 0);
    out_.vfilter_tgid = kVfilterTgid;
    out_.backend_tgid = kBackendTgid;
    out_.meta_blocks = o.meta_blocks;
    const std::uint32_t total = o.tagged_vdisks + o.backend_vdisks;
    for (std::uint32_t i = 0; i < total; ++i) {
      const VdiskKey key{VmId{i + 1}, VdiskId{1}};
      (i < o.tagged_vdisks ? out_.tagged : out_.backend).push_back(key);
      keys_.push_back(key);
      layout_.emplace_back(o.vdisk_blocks, -1);
      out_.declarations.push_back({i + 1, 1, "vm" + std::to_string(i + 1), "disk0",
                                   "/sim/vm" + std::to_string(i + 1) + ".raw"});
    }
    for (std::uint16_t s = 1; s <= 64; ++s) free_slots_.insert(s);
  }

  SimOutput run() {
    std::uint64_t t = 1'000'000'000;
    for (std::uint32_t i = 0; i < o_.requests; ++i) {
      t += std::exponential_distribution<double>(1.0 / double(o_.mean_gap_ns))(rng_) + 1;
      while (inflight_.size() >= o_.concurrency) {
        t = std::max(t, earliest_completion() + 1);
        complete_due(t);
      }
      complete_due(t);
      alloc_.release(t);
      submit(t);
    }
    complete_due(UINT64_MAX);
    for (std::size_t v = 0; v < keys_.size(); ++v) {
      auto& m = out_.truth[keys_[v]];
      for (std::uint64_t b = 0; b < o_.vdisk_blocks; ++b) {
        if (layout_[v][b] >= 0) m[b] = static_cast<std::uint64_t>(layout_[v][b]);
      }
    }
    deliver();
    return std::move(out_);
  }

 private:
  std::uint64_t uni(std::uint64_t lo, std::uint64_t hi) {
    return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng_);
  }
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }

  std::uint64_t earliest_completion() const {
    std::uint64_t e = UINT64_MAX;
    for (const auto& f : inflight_) e = std::min(e, f.complete);
    return e;
  }

  void complete_due(std::uint64_t t) {
    std::erase_if(inflight_, [&](InFlight& f) {
      if (f.complete > t) return false;
      if (f.slot != 0) free_slots_.insert(f.slot);
      for (const auto b : f.to_free) alloc_.free_at(b, f.complete + o_.reuse_delay_ns);
      return true;
    });
  }

  bool overlaps_inflight(std::size_t v, std::uint64_t vb0, std::uint64_t n) const {
    return std::any_of(inflight_.begin(), inflight_.end(), [&](const InFlight& f) {
      return f.vdisk == v && vb0 < f.vb0 + f.n && f.vb0 < vb0 + n;
    });
  }

  PhysEvent bio(std::uint64_t ts, std::uint64_t block, std::uint64_t blocks, IoOp op,
                std::uint32_t tgid, std::uint16_t slot) const {
    PhysEvent e;
    e.ts_ns = ts;
    e.sector = block * kSectorsPerBlock;
    e.bytes = static_cast<std::uint32_t>(blocks * kBlock);
    e.dev = out_.device.kernel();
    e.tgid = tgid;
    e.tid = tgid + 1;
    e.ioprio = tag::ioprio_for_slot(slot);
    e.op = static_cast<std::uint8_t>(op);
    e.kind = static_cast<std::uint8_t>(PhysEventKind::kQueue);
    return e;
  }

  void foreign_io(std::uint64_t from, std::uint64_t to) {
    if (chance(o_.journal_per_request)) {
      events_.push_back(
          bio(uni(from, to), uni(0, o_.meta_blocks - 1), 1, IoOp::kWrite, kJournalTgid, 0));
      ++out_.untagged_foreign_bios;
    }
    if (chance(o_.metadata_per_request)) {
      events_.push_back(
          bio(uni(from, to), uni(0, o_.meta_blocks - 1), 1, IoOp::kRead, kVfilterTgid, 0));
      ++out_.untagged_foreign_bios;
    }
  }

  // Metadata bios inside a write's window [from, to]: tagged ones for the vfilter (slot != 0),
  // REQ_META ones of the backend process.
  void metadata_io(std::uint64_t from, std::uint64_t to, std::uint32_t tgid, std::uint16_t slot,
                   std::size_t v) {
    auto add = [&](std::uint64_t block, std::uint64_t blocks, std::uint32_t flags) {
      PhysEvent e = bio(uni(from, to), block, blocks, IoOp::kWrite, tgid, slot);
      e.cmd_flags = flags;
      events_.push_back(e);
      return e;
    };
    if (slot != 0) {
      if (o_.tagged_metadata_per_request <= 0 || !chance(o_.tagged_metadata_per_request)) return;
      const std::uint64_t tree_block = uni(1, o_.meta_blocks / 2 - 1);
      add(tree_block, 1, kReqMeta);                       // metadata, copy 1
      add(tree_block + o_.meta_blocks / 2, 1, kReqMeta);  // DUP copy 2
      add(0, 0, kReqPreflush);                            // empty flush
      add(0, 1, kReqMeta | kReqPreflush | kReqFua);       // superblock
      out_.tagged_metadata_bios += 4;
      return;
    }
    if (o_.backend_req_meta_per_request <= 0 || !chance(o_.backend_req_meta_per_request)) return;
    const PhysEvent e = add(uni(1, o_.meta_blocks - 1), 1, kReqMeta);
    out_.backend_bios[{e.ts_ns, e.sector}] = {keys_[v], 0, true};
    ++out_.backend_metadata_bios;
  }

  void submit(std::uint64_t t) {
    const std::size_t v = uni(0, keys_.size() - 1);
    const bool backend = v >= o_.tagged_vdisks;
    const std::uint64_t n =
        backend ? (o_.backend_max_request_blocks > 1 ? uni(1, o_.backend_max_request_blocks) : 1)
                : uni(1, o_.max_request_blocks);
    std::uint64_t vb0 = uni(0, o_.vdisk_blocks - n);
    for (int tries = 0; overlaps_inflight(v, vb0, n); ++tries) {
      if (tries == 10) return;  // a guest does not issue overlapping requests concurrently
      vb0 = uni(0, o_.vdisk_blocks - n);
    }
    std::uint16_t slot = 0;
    if (!backend) {
      if (free_slots_.empty()) return;
      slot = *free_slots_.begin();
      free_slots_.erase(free_slots_.begin());
    }
    const IoOp op = chance(o_.trim_fraction)   ? IoOp::kDiscard
                    : chance(o_.read_fraction) ? IoOp::kRead
                                               : IoOp::kWrite;
    InFlight f{0, slot, v, vb0, n, {}};
    std::vector<std::int64_t> blocks(n, -1);
    auto& lay = layout_[v];
    for (std::uint64_t i = 0; i < n; ++i) {
      std::int64_t& cur = lay[vb0 + i];
      if (op == IoOp::kWrite) {
        if (cur < 0 || o_.copy_on_write) {
          if (cur >= 0) f.to_free.push_back(static_cast<std::uint64_t>(cur));
          cur = static_cast<std::int64_t>(alloc_.alloc(o_.fragmentation));
        }
        blocks[i] = cur;
      } else if (op == IoOp::kRead) {
        blocks[i] = cur;
      } else if (cur >= 0) {
        f.to_free.push_back(static_cast<std::uint64_t>(cur));
        cur = -1;
      }
    }
    const std::uint32_t tgid = backend ? kBackendTgid : kVfilterTgid;
    std::uint64_t ts = t + uni(1'000, 5'000);
    // Bios in increasing file offset, one per physically contiguous run.
    for (std::uint64_t i = 0; i < n;) {
      if (blocks[i] < 0) {
        ++i;
        continue;
      }
      std::uint64_t j = i + 1;
      while (j < n && j - i < o_.max_bio_blocks && blocks[j] == blocks[j - 1] + 1) ++j;
      const auto first = static_cast<std::uint64_t>(blocks[i]);
      events_.push_back(bio(ts, first, j - i, op, tgid, slot));
      if (backend) {
        out_.backend_bios[{ts, first * kSectorsPerBlock}] = {keys_[v], (vb0 + i) * kBlock};
      } else {
        ++out_.tagged_bios;
      }
      ts += uni(1'000, 20'000);
      i = j;
    }
    f.complete = ts + uni(10'000, 500'000);
    foreign_io(t, f.complete);
    if (op == IoOp::kWrite) metadata_io(t, f.complete, backend ? kBackendTgid : tgid, slot, v);
    ContextRecord r;
    r.submit_ns = t;
    r.complete_ns = f.complete;
    r.voffset = vb0 * kBlock;
    r.length = static_cast<std::uint32_t>(n * kBlock);
    r.tgid = tgid;
    r.vm_id = keys_[v].vm.value();
    r.vdisk_id = keys_[v].vdisk.value();
    r.slot = slot;
    r.op = static_cast<std::uint8_t>(op);
    r.seq = ++seq_;
    records_.push_back(r);
    inflight_.push_back(std::move(f));
  }

  // Two in-order streams (records by completion, events by time), each delayed by up to the
  // skew, merged by arrival.
  void deliver() {
    std::stable_sort(records_.begin(), records_.end(),
                     [](const auto& a, const auto& b) { return a.complete_ns < b.complete_ns; });
    std::stable_sort(events_.begin(), events_.end(),
                     [](const auto& a, const auto& b) { return a.ts_ns < b.ts_ns; });
    std::vector<Delivery> rec, ev;
    std::uint64_t last = 0;
    for (const auto& r : records_) {
      last = std::max(last, r.complete_ns + uni(0, o_.max_delivery_skew_ns));
      rec.push_back({last, true, r, {}});
    }
    last = 0;
    for (const auto& e : events_) {
      last = std::max(last, e.ts_ns + uni(0, o_.max_delivery_skew_ns));
      ev.push_back({last, false, {}, e});
    }
    out_.deliveries.resize(rec.size() + ev.size());
    std::merge(rec.begin(), rec.end(), ev.begin(), ev.end(), out_.deliveries.begin(),
               [](const Delivery& a, const Delivery& b) { return a.at_ns < b.at_ns; });
  }

  SimOptions o_;
  std::mt19937_64 rng_;
  Allocator alloc_;
  SimOutput out_;
  std::vector<VdiskKey> keys_;
  std::vector<std::vector<std::int64_t>> layout_;
  std::set<std::uint16_t> free_slots_;
  std::vector<InFlight> inflight_;
  std::vector<ContextRecord> records_;
  std::vector<PhysEvent> events_;
  std::uint64_t seq_ = 0;
};

}  // namespace

SimOutput simulate(const SimOptions& options) {
  return Simulator(options).run();
}

void write_stream(const SimOutput& out, const std::filesystem::path& path) {
  StreamWriter w(path);
  for (const auto& d : out.declarations) w.write(d);
  for (const auto& d : out.deliveries) {
    if (d.is_record) {
      w.write(d.record);
    } else {
      w.write(d.event);
    }
  }
  w.flush();
}

}  // namespace v2p::correlator::sim
