#include "correlator/correlator.hpp"

#include <algorithm>

#include "correlator/tag_join.hpp"
#include "correlator/window_join.hpp"
#include "v2p/tag.hpp"

namespace v2p::correlator {

struct Correlator::State {
  explicit State(Options o)
      : opts(o), writer(map), tag(writer, stats, trims, opts), window(writer, stats, trims, opts) {}
  Options opts;
  V2PMap map;
  MapWriter writer;  // the joins write through it, so changes can be observed
  Stats stats;
  TrimLog trims;
  TagJoin tag;
  WindowJoin window;
  std::map<VdiskKey, VdiskDeclaration> declarations;
  std::uint64_t watermark = 0;
};

Correlator::Correlator(Options options) : s_(std::make_unique<State>(options)) {}
Correlator::~Correlator() = default;

void Correlator::declare(const VdiskDeclaration& d) {
  s_->declarations[{VmId{d.vm_id}, VdiskId{d.vdisk_id}}] = d;
}

void Correlator::add_backend_process(std::uint32_t tgid) {
  s_->window.add_backend(tgid);
}

void Correlator::on_record(const ContextRecord& r) {
  ++s_->stats.records;
  s_->watermark = std::max(s_->watermark, r.complete_ns);
  if (r.slot != 0) {
    s_->tag.on_record(r);
    return;
  }
  const auto op = static_cast<IoOp>(r.op);
  if (r.result == 0 && (op == IoOp::kDiscard || op == IoOp::kWriteZeroes)) {
    s_->writer.unmap(r.key(), r.offset(), r.length);
    s_->trims.add(r.key(), r.voffset, r.voffset + r.length, r.submit_ns, r.complete_ns);
    ++s_->stats.trims;
    return;
  }
  s_->window.on_record(r);
}

void Correlator::on_event(const PhysEvent& e) {
  // Only submissions place data; remaps and completions describe the same bio again.
  if (static_cast<PhysEventKind>(e.kind) != PhysEventKind::kQueue) {
    ++s_->stats.other_events;
    return;
  }
  ++s_->stats.events;
  s_->watermark = std::max(s_->watermark, e.ts_ns);
  const Bio b = Bio::of(e);
  s_->tag.note_event_time(e.ts_ns);
  const std::uint16_t slot = tag::slot_from_ioprio(e.ioprio);
  if (is_metadata(e) && (slot != 0 || s_->window.is_backend(e.tgid))) {
    // Metadata written on behalf of a request (tagged by the thread's ioprio) or by a backend:
    // counting its bytes would shift the offsets of the request's real data bios.
    ++s_->stats.metadata;
    ++s_->stats.unattributed;
    return;
  }
  if (slot != 0) {
    s_->tag.on_event(e.tgid, slot, b);
  } else if (s_->window.is_backend(e.tgid)) {
    s_->window.on_event(e.tgid, b);
  } else {
    ++s_->stats.unattributed;  // journal, metadata, other processes: never guessed into a VM
  }
}

void Correlator::on_lost(std::uint64_t lost_total) {
  s_->stats.lost_events = lost_total;
}

void Correlator::advance(std::uint64_t now_ns) {
  s_->tag.advance(now_ns);
  s_->window.advance(now_ns);
  // Window joins wait settle + horizon at most; keep trims as long as anything could predate them.
  s_->trims.expire(now_ns, 2 * s_->opts.horizon_ns + s_->opts.window_settle_ns);
}

void Correlator::drain() {
  s_->tag.drain();
  s_->window.drain();
  s_->trims.expire(UINT64_MAX, 0);
}

const V2PMap& Correlator::map() const {
  return s_->map;
}
V2PMap& Correlator::mutable_map() {
  return s_->map;
}

Stats Correlator::stats() const {
  Stats st = s_->stats;
  st.pending_records = s_->tag.pending_records() + s_->window.pending_records();
  st.pending_events = s_->tag.pending_events() + s_->window.pending_events();
  return st;
}

std::optional<VdiskDeclaration> Correlator::vdisk(VdiskKey key) const {
  const auto it = s_->declarations.find(key);
  if (it == s_->declarations.end()) return std::nullopt;
  return it->second;
}

std::vector<VdiskDeclaration> Correlator::vdisk_declarations() const {
  std::vector<VdiskDeclaration> out;
  for (const auto& [key, d] : s_->declarations) out.push_back(d);
  return out;
}

std::vector<std::uint32_t> Correlator::backend_processes() const {
  return s_->window.backends();
}

std::uint64_t Correlator::watermark_ns() const {
  return s_->watermark;
}
void Correlator::set_watermark_ns(std::uint64_t ns) {
  s_->watermark = ns;
}

void Correlator::set_change_observer(MapChangeObserver observer) {
  s_->writer.set_observer(std::move(observer));
}

void Correlator::set_window_observer(std::function<void(const WindowDecision&)> observer) {
  s_->window.set_observer(std::move(observer));
}

}  // namespace v2p::correlator
