#include "correlator/uprobe_join.hpp"

#include <algorithm>
#include <utility>

#include "v2p/tag.hpp"

namespace v2p::correlator {
namespace {

constexpr std::uint16_t kSyntheticSlot = 1;
// Slots of submit-window records (per thread, cycling): never 1, the thread-pool syscalls' slot.
constexpr std::uint16_t kFirstSubmitSlot = 2;
constexpr std::size_t kMaxQueued = 4096;
// How long a top request may wait for its lower layers, and a file request for its syscall
// (a thread pool queue under load): older ones are forgotten.
constexpr std::uint64_t kRequestLifeNs = 10'000'000'000;

bool inside(std::uint64_t ts, std::uint64_t start, std::uint64_t end) {
  return ts >= start && ts <= end;
}

}  // namespace

UprobeJoin::UprobeJoin(Hooks hooks, std::uint64_t hold_ns)
    : hooks_(std::move(hooks)), hold_ns_(hold_ns) {}

void UprobeJoin::add_process(std::uint32_t tgid) {
  procs_.try_emplace(tgid);
}

void UprobeJoin::remove_process(std::uint32_t tgid) {
  const auto it = procs_.find(tgid);
  if (it == procs_.end()) return;
  for (const auto& e : it->second.held) release(it->second, e);
  procs_.erase(it);
}

bool UprobeJoin::traced(std::uint32_t tgid) const {
  return procs_.contains(tgid);
}

const NodeInfo* UprobeJoin::node(Process& p, std::uint32_t tgid, std::uint64_t bs) {
  if (const auto it = p.nodes.find(bs); it != p.nodes.end()) return &it->second;
  auto info = hooks_.node ? hooks_.node(tgid, bs) : std::nullopt;
  if (!info) return nullptr;  // not cached: a node being created may become readable
  return &p.nodes.emplace(bs, std::move(*info)).first->second;
}

void UprobeJoin::on_layer(const LayerRequest& r) {
  const auto pit = procs_.find(r.tgid);
  if (pit == procs_.end()) return;
  Process& p = pit->second;
  ++stats_.layer_requests;
  const NodeInfo* n = node(p, r.tgid, r.node);
  if (!n) return;
  if (!n->protocol) {
    // Below a device's top node, filters and backing files keep the guest offset: a request on
    // the qiov of another node's pending request, at the offset that part has there, is that
    // request one layer down. Anything else (a freed qiov reused by another device's request
    // lands at an unrelated offset) is a guest request entering at its top node.
    const auto t = r.qiov == 0 ? p.tops.end() : p.tops.find(r.qiov);
    if (t != p.tops.end() && t->second.node != r.node &&
        r.ts_ns - t->second.ts_ns < kRequestLifeNs && r.qiov_offset >= t->second.qiov_offset &&
        r.qiov_offset + r.bytes <= t->second.qiov_offset + t->second.bytes &&
        r.offset == t->second.offset + (r.qiov_offset - t->second.qiov_offset)) {
      ++stats_.lower_requests;
      return;
    }
    ++stats_.top_requests;
    auto key = p.node_vdisk.find(r.node);
    if (key == p.node_vdisk.end()) {
      const auto v = hooks_.vdisk ? hooks_.vdisk(r.tgid, *n) : std::nullopt;
      if (!v) return;
      key = p.node_vdisk.emplace(r.node, *v).first;
      p.path_vdisk.try_emplace(n->path, *v);
    }
    if (r.qiov == 0) {
      // Guest write-zeroes: the range's old placement no longer holds its data.
      if (!r.write) return;
      ContextRecord z;
      z.submit_ns = z.complete_ns = r.ts_ns;
      z.voffset = r.offset;
      z.length = static_cast<std::uint32_t>(r.bytes);
      z.tgid = r.tgid;
      z.vm_id = key->second.vm.value();
      z.vdisk_id = key->second.vdisk.value();
      z.op = static_cast<std::uint8_t>(IoOp::kWriteZeroes);
      z.seq = ++p.seq;
      if (hooks_.on_record) hooks_.on_record(z);
      return;
    }
    p.tops[r.qiov] = Top{r.ts_ns, r.node, r.offset, r.bytes, r.qiov_offset, key->second};
    return;
  }

  FileRange range;
  range.ts_ns = r.ts_ns;
  range.bytes = r.bytes;
  const auto t = r.qiov == 0 ? p.tops.end() : p.tops.find(r.qiov);
  if (t != p.tops.end() && r.ts_ns - t->second.ts_ns < kRequestLifeNs &&
      r.qiov_offset >= t->second.qiov_offset &&
      r.qiov_offset + r.bytes <= t->second.qiov_offset + t->second.bytes) {
    ++stats_.lower_requests;
    range.data = true;
    range.known_vdisk = true;
    range.vdisk = t->second.vdisk;
    range.voffset = t->second.offset + (r.qiov_offset - t->second.qiov_offset);
    p.node_vdisk[r.node] = t->second.vdisk;
  } else {
    ++stats_.metadata_requests;
    // Whose metadata: the vdisk this node was seen serving, else the one whose top node opens
    // the same file (a qcow2 node and its file child share the path).
    if (const auto v = p.node_vdisk.find(r.node); v != p.node_vdisk.end()) {
      range.known_vdisk = true;
      range.vdisk = v->second;
    } else if (const auto pv = p.path_vdisk.find(n->path); pv != p.path_vdisk.end()) {
      range.known_vdisk = true;
      range.vdisk = pv->second;
    }
  }
  p.files[n->path][r.offset] = range;
  if (r.qiov != 0) {
    auto& q = p.queued[r.tid];
    q.push_back({n->path, r.offset, r.bytes, r.write, range});
    if (q.size() > kMaxQueued) q.pop_front();  // thread-pool aio never consumes them
  }
}

void UprobeJoin::on_file_io(const FileIo& f) {
  const auto pit = procs_.find(f.tgid);
  if (pit == procs_.end() || (f.data && f.result <= 0)) return;
  Process& p = pit->second;
  if (f.submit) {
    if (f.result <= 0) return;
    SubmitWindow w{f.tid, f.start_ns, f.end_ns, static_cast<std::uint64_t>(f.result), {}};
    for (auto it = p.held.begin(); it != p.held.end();) {
      if (it->tid == f.tid && inside(it->ts_ns, w.start_ns, w.end_ns)) {
        w.bios.push_back(*it);
        it = p.held.erase(it);
      } else {
        ++it;
      }
    }
    p.submits.push_back(std::move(w));
    return;
  }
  Window w{f.start_ns, f.end_ns, false, false, {}};
  const auto path = hooks_.fd_path ? hooks_.fd_path(f.tgid, f.fd) : std::nullopt;
  const auto file = path ? p.files.find(*path) : p.files.end();
  const FileRange* range = nullptr;
  std::uint64_t range_offset = 0;
  if (file != p.files.end()) {
    auto it = file->second.upper_bound(f.pos);
    if (it != file->second.begin()) {
      --it;
      if (f.pos < it->first + it->second.bytes && it->second.ts_ns <= f.start_ns) {
        range = &it->second;
        range_offset = it->first;
      }
    }
  }
  const auto bytes = static_cast<std::uint64_t>(f.result);
  if (range) {
    w.known_vdisk = range->known_vdisk;
    w.vdisk = range->vdisk;
  } else if (path) {
    if (const auto pv = p.path_vdisk.find(*path); pv != p.path_vdisk.end()) {
      w.known_vdisk = true;
      w.vdisk = pv->second;
    }
  }
  if (f.data && range && range->data && f.pos + bytes <= range_offset + range->bytes) {
    w.data = true;
    ContextRecord rec;
    rec.submit_ns = f.start_ns;
    rec.complete_ns = f.end_ns;
    rec.voffset = range->voffset + (f.pos - range_offset);
    rec.length = static_cast<std::uint32_t>(bytes);
    rec.tgid = f.tid;
    rec.vm_id = range->vdisk.vm.value();
    rec.vdisk_id = range->vdisk.vdisk.value();
    rec.slot = kSyntheticSlot;
    rec.op = static_cast<std::uint8_t>(f.write ? IoOp::kWrite : IoOp::kRead);
    rec.seq = ++p.seq;
    ++stats_.data_syscalls;
    if (hooks_.on_record) hooks_.on_record(rec);
  } else {
    ++stats_.other_syscalls;
  }
  if (path) {
    // Done by a syscall of its own (the thread pool: an unaligned request under aio=native, or
    // aio=threads): no submit syscall will issue it. Matched by file and position alone, so a
    // newer request at the same offset cannot leave it queued and shift every later window.
    for (auto& [tid, q] : p.queued) {
      const auto it = std::find_if(q.begin(), q.end(), [&](const Queued& x) {
        return x.path == *path && x.offset <= f.pos && f.pos < x.offset + x.bytes;
      });
      if (it != q.end()) {
        q.erase(it);
        break;
      }
    }
  }
  p.windows[f.tid].push_back(w);
  // Bios that arrived before the syscall's exit event.
  for (auto it = p.held.begin(); it != p.held.end();) {
    if (it->tid == f.tid && inside(it->ts_ns, w.start_ns, w.end_ns)) {
      place(p, *it, w);
      it = p.held.erase(it);
    } else {
      ++it;
    }
  }
}

void UprobeJoin::on_event(const PhysEvent& e) {
  const auto pit = procs_.find(e.tgid);
  if (pit == procs_.end() || static_cast<PhysEventKind>(e.kind) != PhysEventKind::kQueue) {
    if (hooks_.on_event) hooks_.on_event(e);
    return;
  }
  Process& p = pit->second;
  for (auto& w : p.submits) {
    if (w.tid == e.tid && inside(e.ts_ns, w.start_ns, w.end_ns)) {
      w.bios.push_back(e);
      return;
    }
  }
  if (const auto ws = p.windows.find(e.tid); ws != p.windows.end()) {
    for (auto w = ws->second.rbegin(); w != ws->second.rend(); ++w) {
      if (inside(e.ts_ns, w->start_ns, w->end_ns)) {
        place(p, e, *w);
        return;
      }
    }
  }
  p.held.push_back(e);
}

void UprobeJoin::place(Process& p, const PhysEvent& e, const Window& w) {
  (void)p;
  PhysEvent c = e;
  if (w.data) {
    // The synthetic tagged process of the syscall's record (see the header).
    c.tgid = e.tid;
    c.ioprio = tag::ioprio_for_slot(kSyntheticSlot);
    ++stats_.data_bios;
  } else {
    if (w.known_vdisk)
      stats_.metadata_bytes[w.vdisk] += e.bytes;
    else {
      ++stats_.unattributed_bios;
      stats_.unattributed_bytes += e.bytes;
    }
    c.tgid = 0;  // owned by no request: keep it away from any window join
  }
  if (hooks_.on_event) hooks_.on_event(c);
}

void UprobeJoin::finish_submit(Process& p, SubmitWindow& w) {
  std::stable_sort(w.bios.begin(), w.bios.end(),
                   [](const PhysEvent& a, const PhysEvent& b) { return a.ts_ns < b.ts_ns; });
  std::vector<PhysEvent> data;
  for (const auto& e : w.bios) {
    if (e.bytes == 0)
      unattributed(e);  // a flush (IORING_OP_FSYNC)
    else
      data.push_back(e);
  }
  auto& q = p.queued[w.tid];
  const std::size_t n = std::min<std::size_t>(w.count, q.size());
  // The n oldest queued requests are what the syscall submitted, in order; their bios must add
  // up to them one by one, or a request went elsewhere (punted to an io-wq worker, which queues
  // its bios from another thread): then nothing of the window is guessed.
  std::vector<std::size_t> ends;  // per request, one past its last bio
  std::size_t b = 0;
  bool ok = true;
  for (std::size_t i = 0; i < n && ok; ++i) {
    std::uint64_t sum = 0;
    while (b < data.size() && sum < q[i].bytes) sum += data[b++].bytes;
    ok = sum == q[i].bytes;
    ends.push_back(b);
  }
  ok = ok && b == data.size();
  ++stats_.submit_windows;
  if (!ok) {
    ++stats_.submit_mismatches;
    for (const auto& e : data) unattributed(e);
  } else {
    std::size_t first = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const Queued& r = q[i];
      Window win{w.start_ns, w.end_ns, r.range.data, r.range.known_vdisk, r.range.vdisk};
      std::uint16_t slot = kSyntheticSlot;
      if (r.range.data) {
        auto& next = p.next_slot.try_emplace(w.tid, kFirstSubmitSlot).first->second;
        slot = next;
        next = next >= tag::kMaxSlot ? kFirstSubmitSlot : static_cast<std::uint16_t>(next + 1);
        ContextRecord rec;
        rec.submit_ns = w.start_ns;
        rec.complete_ns = w.end_ns;
        rec.voffset = r.range.voffset;
        rec.length = static_cast<std::uint32_t>(r.bytes);
        rec.tgid = w.tid;
        rec.vm_id = r.range.vdisk.vm.value();
        rec.vdisk_id = r.range.vdisk.vdisk.value();
        rec.slot = slot;
        rec.op = static_cast<std::uint8_t>(r.write ? IoOp::kWrite : IoOp::kRead);
        rec.seq = ++p.seq;
        ++stats_.data_syscalls;
        if (hooks_.on_record) hooks_.on_record(rec);
      }
      for (std::size_t k = first; k < ends[i]; ++k) {
        PhysEvent c = data[k];
        if (win.data) {
          c.tgid = c.tid;
          c.ioprio = tag::ioprio_for_slot(slot);
          ++stats_.data_bios;
          if (hooks_.on_event) hooks_.on_event(c);
        } else {
          place(p, c, win);
        }
      }
      first = ends[i];
    }
  }
  q.erase(q.begin(), q.begin() + static_cast<std::ptrdiff_t>(n));
}

void UprobeJoin::unattributed(const PhysEvent& e) {
  ++stats_.unattributed_bios;
  stats_.unattributed_bytes += e.bytes;
  PhysEvent c = e;
  c.tgid = 0;
  if (hooks_.on_event) hooks_.on_event(c);
}

void UprobeJoin::release(Process& p, const PhysEvent& e) {
  (void)p;
  ++stats_.unattributed_bios;
  stats_.unattributed_bytes += e.bytes;
  PhysEvent c = e;
  c.tgid = 0;
  if (hooks_.on_event) hooks_.on_event(c);
}

void UprobeJoin::expire(Process& p, std::uint64_t before_ns) {
  // Submit windows whose bios have all arrived (the same hold as for held bios).
  while (!p.submits.empty() && p.submits.front().end_ns < before_ns) {
    finish_submit(p, p.submits.front());
    p.submits.pop_front();
  }
  while (!p.held.empty() && p.held.front().ts_ns < before_ns) {
    release(p, p.held.front());
    p.held.pop_front();
  }
  for (auto it = p.windows.begin(); it != p.windows.end();) {
    auto& q = it->second;
    while (!q.empty() && q.front().end_ns + hold_ns_ < before_ns) q.pop_front();
    it = q.empty() ? p.windows.erase(it) : std::next(it);
  }
  const std::uint64_t old = before_ns > kRequestLifeNs ? before_ns - kRequestLifeNs : 0;
  if (p.tops.size() > 4096)
    std::erase_if(p.tops, [old](const auto& t) { return t.second.ts_ns < old; });
  for (auto& [path, ranges] : p.files)
    if (ranges.size() > 65536)
      std::erase_if(ranges, [old](const auto& r) { return r.second.ts_ns < old; });
}

void UprobeJoin::advance(std::uint64_t now_ns) {
  const std::uint64_t before = now_ns > hold_ns_ ? now_ns - hold_ns_ : 0;
  for (auto& [tgid, p] : procs_) expire(p, before);
}

void UprobeJoin::drain() {
  for (auto& [tgid, p] : procs_) {
    for (auto& w : p.submits) finish_submit(p, w);
    p.submits.clear();
    for (const auto& e : p.held) release(p, e);
    p.held.clear();
  }
}

}  // namespace v2p::correlator
