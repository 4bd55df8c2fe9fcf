#include "pfilter/probe.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <optional>
#include <string>

#include "blockio.skel.h"
#include "common/clock.hpp"
#include "common/error.hpp"
#include "pfilter/blockio.h"
#include "pfilter/completion_join.hpp"
#include "pfilter/events.hpp"
#include "pfilter/libbpf_log.hpp"
#include "pfilter/pin_dir.hpp"

namespace v2p::pfilter {

// The kernel writes v2p_blockio_event; user space reads it as PhysEvent. Same bytes.
#define V2P_SAME_FIELD(f)                                                   \
  static_assert(offsetof(v2p_blockio_event, f) == offsetof(PhysEvent, f) && \
                sizeof(v2p_blockio_event::f) == sizeof(PhysEvent::f))
V2P_SAME_FIELD(ts_ns);
V2P_SAME_FIELD(sector);
V2P_SAME_FIELD(old_sector);
V2P_SAME_FIELD(latency_ns);
V2P_SAME_FIELD(dev);
V2P_SAME_FIELD(old_dev);
V2P_SAME_FIELD(bytes);
V2P_SAME_FIELD(tgid);
V2P_SAME_FIELD(tid);
V2P_SAME_FIELD(cmd_flags);
V2P_SAME_FIELD(ioprio);
V2P_SAME_FIELD(op);
V2P_SAME_FIELD(kind);
V2P_SAME_FIELD(error);
V2P_SAME_FIELD(comm);
#undef V2P_SAME_FIELD
static_assert(sizeof(v2p_blockio_event) == sizeof(PhysEvent));
// on_sample tells the three kinds of ring record apart by their size.
static_assert(sizeof(v2p_complete_record) != sizeof(v2p_blockio_event) &&
              sizeof(v2p_event_record) != sizeof(v2p_blockio_event) &&
              sizeof(v2p_event_record) != sizeof(v2p_complete_record));
static_assert(V2P_EVENT_QUEUE == static_cast<int>(PhysEventKind::kQueue) &&
              V2P_EVENT_REMAP == static_cast<int>(PhysEventKind::kRemap) &&
              V2P_EVENT_COMPLETE == static_cast<int>(PhysEventKind::kComplete));

namespace {

struct SkeletonDeleter {
  void operator()(blockio_bpf* s) const noexcept { blockio_bpf__destroy(s); }
};
struct RingDeleter {
  void operator()(ring_buffer* r) const noexcept { ring_buffer__free(r); }
};

// A read-only memory mapping of a BPF map (a ring buffer's position pages, an mmapable array):
// values the programs publish, read without a system call.
class MapView {
 public:
  MapView(int map_fd, std::size_t bytes, const char* what) {
    const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    bytes_ = (bytes + page - 1) / page * page;
    void* p = ::mmap(nullptr, bytes_, PROT_READ, MAP_SHARED, map_fd, 0);
    if (p == MAP_FAILED) throw system_error(std::string("cannot map the pfilter ") + what);
    base_ = static_cast<const unsigned char*>(p);
  }
  ~MapView() { ::munmap(const_cast<unsigned char*>(base_), bytes_); }
  MapView(const MapView&) = delete;
  MapView& operator=(const MapView&) = delete;
  std::uint64_t load(std::size_t offset) const {
    return __atomic_load_n(reinterpret_cast<const std::uint64_t*>(base_ + offset),
                           __ATOMIC_ACQUIRE);
  }

 private:
  std::size_t bytes_ = 0;
  const unsigned char* base_ = nullptr;
};

bool is_power_of_two(std::uint32_t v) {
  return v != 0 && (v & (v - 1)) == 0;
}

void check_options(const ProbeOptions& o) {
  if (::geteuid() != 0) {
    throw Error("the pfilter probe needs root to load eBPF programs; run it with sudo");
  }
  if (!std::filesystem::exists("/sys/kernel/btf/vmlinux")) {
    throw Error(
        "the pfilter probe needs a kernel with BTF (/sys/kernel/btf/vmlinux is missing; "
        "CONFIG_DEBUG_INFO_BTF=y)");
  }
  if (o.flush_ms == 0) throw Error("the flush interval must be at least 1 ms");
  const auto page = static_cast<std::uint32_t>(::sysconf(_SC_PAGESIZE));
  if (o.wakeup_bytes >= o.ring_bytes / 2) {
    throw Error("wakeup threshold must be below half the ring buffer size");
  }
  if (!is_power_of_two(o.ring_bytes) || o.ring_bytes < page) {
    throw Error("ring buffer size " + std::to_string(o.ring_bytes) +
                " must be a power of two of at least one page (" + std::to_string(page) + ")");
  }
}

// Adds key to a filter set: into a free inline entry while there is one (the programs compare
// those without a map lookup; the mapping is shared with them, so this works while attached),
// else into the hash map, which the programs consult once *overflow is set.
void add_to_set(std::uint32_t* inline_set, std::uint32_t* overflow, bpf_map* map, std::uint32_t key,
                const char* what) {
  if (key != 0) {
    for (int i = 0; i < V2P_SET_INLINE; ++i) {
      const std::uint32_t v = __atomic_load_n(&inline_set[i], __ATOMIC_RELAXED);
      if (v == key) return;
      if (v == 0) {
        __atomic_store_n(&inline_set[i], key, __ATOMIC_RELEASE);
        return;
      }
    }
  }
  const std::uint8_t one = 1;
  if (bpf_map__update_elem(map, &key, sizeof key, &one, sizeof one, BPF_ANY) != 0) {
    throw system_error(std::string("cannot add ") + what + " " + std::to_string(key) +
                       " to the pfilter filter (at most " + std::to_string(V2P_SET_INLINE + 1024) +
                       ")");
  }
  __atomic_store_n(overflow, 1u, __ATOMIC_RELEASE);
}

}  // namespace

struct Probe::Impl {
  std::unique_ptr<blockio_bpf, SkeletonDeleter> skel;
  std::unique_ptr<ring_buffer, RingDeleter> ring;
  // The ring's consumer and producer positions (its first two pages): libbpf stops a drain at a
  // record still being written and says nothing, so these tell whether a drain read everything
  // produced before some moment.
  std::optional<MapView> ring_positions;
  std::optional<MapView> unsent_since;  // v2p_unsent_since (V2P_SINCE_SLOT)
  int cpus = 0;
  std::size_t ring_page = 0;
  std::optional<PinDirectory> pins;  // destroyed before the skeleton: unpin, then detach
  std::filesystem::path pin_path;
  ReqFlagBits bits;
  bool filter_devices = false;
  bool filter_tgids = false;
  std::unique_ptr<CompletionJoin> inflight;  // with completions only
  std::uint64_t flush_interval_ns = 0;
  std::uint64_t last_check_ns = 0;
  unsigned idle_checks =
      0;  // checks in a row that found nothing waiting: the next one waits longer
  std::atomic<std::uint64_t> unmatched{0};  // read by other threads for statistics
  bool suppressing = false;

  // Completions received but not joined yet: a completion is joined only once every queue event
  // older than it has arrived, which holds for those older than joinable_before_ns (see drain).
  struct PendingCompletion {
    std::uint64_t bio;
    std::uint64_t ts_ns;
    std::int32_t error;
  };
  std::vector<PendingCompletion> pending;
  std::uint64_t joinable_before_ns = 0;

  // State of the poll() in progress, read by the ring buffer callback.
  const std::function<void(const PhysEvent&)>* on_event = nullptr;
  std::size_t delivered = 0;
  std::exception_ptr failure;

  static int on_sample(void* ctx, void* data, std::size_t size) noexcept;
  void on_bio_event(const void* raw);  // a v2p_blockio_event
  void on_completions(const v2p_complete_record& c);
  void join_ready();
  std::uint64_t counter(std::uint32_t which) const;
  std::uint64_t recursion_misses() const;
  std::uint64_t since(int cpu, unsigned which) const {
    return unsent_since->load(V2P_SINCE_SLOT(static_cast<std::size_t>(cpu), which) * 8);
  }
  bool flush_batches(bool all);
  void drain();
  void flush_and_drain(bool all) {
    const bool waiting = flush_batches(all);
    drain();
    idle_checks = waiting ? 0 : std::min(idle_checks + 1, 3u);
  }
  void pin();
  void add_device(std::uint32_t dev) {
    add_to_set(skel->bss->v2p_dev_set, &skel->bss->v2p_dev_overflow, skel->maps.v2p_devices, dev,
               "device");
  }
  void add_tgid(std::uint32_t tgid) {
    add_to_set(skel->bss->v2p_tgid_set, &skel->bss->v2p_tgid_overflow, skel->maps.v2p_tgids, tgid,
               "tgid");
  }
};

int Probe::Impl::on_sample(void* ctx, void* data, std::size_t size) noexcept {
  auto* self = static_cast<Impl*>(ctx);
  try {
    if (size == sizeof(v2p_event_record)) {
      // Read in place: the record is 1 288 bytes. An exception drops the rest of the record.
      const auto* r = static_cast<const v2p_event_record*>(data);
      const std::uint32_t n = std::min<std::uint32_t>(r->count, V2P_EVENT_BATCH);
      for (std::uint32_t i = 0; i < n; ++i) self->on_bio_event(&r->events[i]);
    } else if (size == sizeof(v2p_complete_record)) {
      v2p_complete_record c;
      std::memcpy(&c, data, sizeof c);
      self->on_completions(c);
    } else if (size == sizeof(v2p_blockio_event)) {
      self->on_bio_event(data);
    }
  } catch (...) {
    // Unwinding through libbpf's C frames is not allowed; stop the drain and rethrow outside.
    self->failure = std::current_exception();
    return -ECANCELED;
  }
  return 0;
}

void Probe::Impl::on_bio_event(const void* raw) {
  PhysEvent e;
  std::memcpy(&e, raw, sizeof e);
  e.op = static_cast<std::uint8_t>(io_op_from_cmd_flags(e.cmd_flags, e.bytes, bits));
  if (e.kind == V2P_EVENT_QUEUE) {
    // The kernel put the bio's address there, for the join with its completion.
    if (inflight && e.latency_ns != 0) inflight->queued(e.latency_ns, e);
    e.latency_ns = 0;
  }
  (*on_event)(e);
  ++delivered;
}

void Probe::Impl::on_completions(const v2p_complete_record& c) {
  if (!inflight) return;
  const std::uint32_t n = std::min<std::uint32_t>(c.count, V2P_COMPLETE_BATCH);
  for (std::uint32_t i = 0; i < n; ++i) {
    pending.push_back({c.bios[i], c.ts_ns[i], errno_from_blk_status(c.status[i])});
  }
}

// Joins the pending completions older than joinable_before_ns, in the order they came; the
// others stay, in order. Every queue event such a completion can belong to is in the join now,
// so one that has none never had one (queued before attach or by a filtered-out process, a
// split's front part, or lost with a full ring).
void Probe::Impl::join_ready() {
  std::size_t kept = 0;
  std::size_t i = 0;
  try {
    for (; i < pending.size(); ++i) {
      const PendingCompletion p = pending[i];
      if (p.ts_ns >= joinable_before_ns) {
        pending[kept++] = p;
        continue;
      }
      PhysEvent e;
      if (!inflight->completed(p.bio, p.ts_ns, p.error, e)) {
        unmatched.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      (*on_event)(e);
      ++delivered;
    }
  } catch (...) {
    ++i;  // the completion being delivered is consumed
    pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(kept),
                  pending.begin() + static_cast<std::ptrdiff_t>(i));
    throw;
  }
  pending.resize(kept);
}

// A counter's slots of every program on every CPU (see blockio.h).
std::uint64_t Probe::Impl::counter(std::uint32_t which) const {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return 0;
  std::vector<std::uint64_t> values(static_cast<std::size_t>(cpus));
  std::uint64_t sum = 0;
  for (std::uint32_t prog = 0; prog < V2P_PROGS; ++prog) {
    const std::uint32_t slot = V2P_COUNTER_SLOT(which, prog);
    if (bpf_map__lookup_elem(skel->maps.v2p_counters, &slot, sizeof slot, values.data(),
                             values.size() * sizeof(std::uint64_t), 0) != 0) {
      continue;
    }
    for (const auto v : values) sum += v;
  }
  return sum;
}

// Calls the kernel skipped because the same program was already running on that CPU (a
// tracepoint hit from an interrupt while the program ran for another bio): events lost too.
std::uint64_t Probe::Impl::recursion_misses() const {
  std::uint64_t sum = 0;
  for (bpf_program* p : {skel->progs.v2p_bio_queue, skel->progs.v2p_bio_remap,
                         skel->progs.v2p_rq_done, skel->progs.v2p_bio_done}) {
    const int fd = bpf_program__fd(p);
    if (fd < 0) continue;  // not loaded
    bpf_prog_info info{};
    std::uint32_t len = sizeof info;
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) sum += info.recursion_misses;
  }
  return sum;
}

// Runs the flush program on the CPUs whose batches hold something older than the flush interval
// (all: on every CPU), so events in unfilled batches reach the ring; under steady load batches
// fill within a millisecond and no IPI is needed. True when some batch held anything. A CPU that
// is offline has no batch in the making (ENXIO). Any other failure throws: events would otherwise
// wait, unreported, until their batch fills (up to 15 per CPU, for ever when I/O stops).
bool Probe::Impl::flush_batches(bool all) {
  const int fd = bpf_program__fd(skel->progs.v2p_flush);
  const std::uint64_t now = monotonic_ns();
  last_check_ns = now;
  bool waiting = false;
  for (int cpu = 0; cpu < cpus; ++cpu) {
    bool due = all;
    for (unsigned which = V2P_SINCE_EVENTS; which <= V2P_SINCE_COMPLETIONS(V2P_BATCH_BIO);
         ++which) {
      const std::uint64_t t = since(cpu, which);
      if (t == 0) continue;
      waiting = true;
      due = due || now - std::min(now, t) >= flush_interval_ns;
    }
    if (!due) continue;
    LIBBPF_OPTS(bpf_test_run_opts, run, .flags = BPF_F_TEST_RUN_ON_CPU,
                .cpu = static_cast<__u32>(cpu));
    if (const int rc = bpf_prog_test_run_opts(fd, &run); rc < 0 && rc != -ENXIO) {
      throw system_error("running the pfilter flush on CPU " + std::to_string(cpu) +
                             " (BPF_PROG_TEST_RUN with BPF_F_TEST_RUN_ON_CPU)",
                         -rc);
    }
  }
  return waiting;
}

// Reads the ring, then joins the completions that became joinable. A bio's queue event is
// written, and its time published in v2p_unsent_since while it waits in a batch, before the bio
// goes to its driver, so before its completion's time. Taken in this order, `now`, then the
// oldest time any batch holds, then the producer position, and once the drain has consumed up to
// that position: every queue event older than both times has been read.
void Probe::Impl::drain() {
  std::uint64_t joinable = monotonic_ns();
  for (int cpu = 0; cpu < cpus; ++cpu) {
    const std::uint64_t t = since(cpu, V2P_SINCE_EVENTS);
    if (t != 0) joinable = std::min(joinable, t);
  }
  const std::uint64_t produced = ring_positions->load(ring_page);
  if (const int rc = ring_buffer__consume(ring.get()); rc < 0 && rc != -ECANCELED) {
    throw system_error("reading the pfilter ring buffer", -rc);
  }
  if (failure) std::rethrow_exception(failure);
  if (ring_positions->load(0) >= produced) {
    joinable_before_ns = std::max(joinable_before_ns, joinable);
  }
  if (inflight) join_ready();
}

void Probe::Impl::pin() {
  bpf_program* progs[] = {skel->progs.v2p_bio_queue, skel->progs.v2p_bio_remap,
                          skel->progs.v2p_rq_done, skel->progs.v2p_bio_done, skel->progs.v2p_flush};
  for (bpf_program* p : progs) {
    if (!bpf_program__autoload(p)) continue;
    const auto path = pins->entry(bpf_program__name(p));
    if (bpf_program__pin(p, path.c_str()) != 0) throw system_error("cannot pin " + path.string());
  }
  bpf_map* maps[] = {
      skel->maps.v2p_events,       skel->maps.v2p_devices,          skel->maps.v2p_tgids,
      skel->maps.v2p_counters,     skel->maps.v2p_complete_batches, skel->maps.v2p_event_batches,
      skel->maps.v2p_unsent_since, skel->maps.v2p_slot_table,       skel->maps.v2p_seen_at,
      skel->maps.v2p_seen_from,    skel->maps.v2p_device_stats,     skel->maps.v2p_vdisk_stats};
  for (bpf_map* m : maps) {
    const auto path = pins->entry(bpf_map__name(m));
    if (bpf_map__pin(m, path.c_str()) != 0) throw system_error("cannot pin " + path.string());
  }
}

Probe::Probe(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Probe::~Probe() = default;

std::unique_ptr<Probe> Probe::attach(const ProbeOptions& options) {
  check_options(options);
  auto impl = std::make_unique<Impl>();
  impl->bits = ReqFlagBits::from_kernel();
  impl->filter_devices = !options.devices.empty();
  impl->filter_tgids = !options.tgids.empty();

  // Owning the pin directory comes first: a second probe is refused before it loads anything.
  if (options.pin) {
    impl->pins.emplace(options.pin_dir);
    impl->pin_path = options.pin_dir;
  }
  const LibbpfLogCapture libbpf_log;
  impl->skel.reset(blockio_bpf__open());
  if (!impl->skel) throw system_error("cannot open the pfilter eBPF object");
  auto& skel = *impl->skel;
  skel.rodata->filter_devices = impl->filter_devices;
  skel.rodata->filter_tgids = impl->filter_tgids;
  skel.rodata->track_completions = options.completions;
  impl->suppressing = !options.every_bio && !options.completions;
  skel.rodata->suppress_repeats = impl->suppressing;
  {
    // Sets of V2P_SEEN_WAYS entries, a power of two of them so the programs index with a mask.
    std::uint32_t sets = 1;
    while (sets < options.seen_ranges / V2P_SEEN_WAYS && sets < (1u << 24)) sets <<= 1;
    skel.rodata->seen_set_mask = sets - 1;
    bpf_map__set_max_entries(skel.maps.v2p_seen_at, sets);
    bpf_map__set_max_entries(skel.maps.v2p_seen_from, sets);
  }
  skel.rodata->wakeup_bytes = options.wakeup_bytes;
  skel.rodata->bio_remapped_bit = static_cast<std::uint8_t>(bio_remapped_bit().value_or(0xff));
  bpf_map__set_max_entries(skel.maps.v2p_events, options.ring_bytes);
  impl->cpus = libbpf_num_possible_cpus();
  if (impl->cpus <= 0) throw system_error("cannot count the possible CPUs", -impl->cpus);
  bpf_map__set_max_entries(skel.maps.v2p_unsent_since,
                           static_cast<std::uint32_t>(impl->cpus * V2P_SINCES_PER_CPU));
  if (options.completions) impl->inflight = std::make_unique<CompletionJoin>();
  impl->flush_interval_ns = std::uint64_t{options.flush_ms} * 1'000'000;
  // v2p_rq_done always runs: it keeps the per-device counters; it sends completions only with them.
  bpf_program__set_autoload(skel.progs.v2p_bio_done, options.completions);
  bpf_program__set_autoattach(skel.progs.v2p_flush, false);
  if (const int rc = blockio_bpf__load(&skel); rc != 0) {
    throw Error("loading the pfilter eBPF programs failed (" + std::string(std::strerror(-rc)) +
                "): " + (libbpf_log.last().empty() ? "no detail from libbpf" : libbpf_log.last()));
  }
  impl->unsent_since.emplace(bpf_map__fd(skel.maps.v2p_unsent_since),
                             static_cast<std::size_t>(impl->cpus) * V2P_SINCES_PER_CPU * 8,
                             "batch times");
  // A kernel that cannot run the flush fails here, before anything is attached.
  impl->flush_batches(true);
  for (const auto d : options.devices) impl->add_device(d.kernel());
  for (const auto t : options.tgids) impl->add_tgid(t);
  if (const int rc = blockio_bpf__attach(&skel); rc != 0) {
    throw Error("attaching the pfilter programs to the block tracepoints failed (" +
                std::string(std::strerror(-rc)) + "): " + libbpf_log.last());
  }
  if (options.pin) impl->pin();
  impl->ring.reset(
      ring_buffer__new(bpf_map__fd(skel.maps.v2p_events), &Impl::on_sample, impl.get(), nullptr));
  if (!impl->ring) throw system_error("cannot map the pfilter ring buffer");
  impl->ring_page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  impl->ring_positions.emplace(bpf_map__fd(skel.maps.v2p_events), 2 * impl->ring_page,
                               "ring buffer's positions");
  return std::unique_ptr<Probe>(new Probe(std::move(impl)));
}

std::size_t Probe::poll(int timeout_ms, const std::function<void(const PhysEvent&)>& on_event) {
  Impl& s = *impl_;
  s.on_event = &on_event;
  s.delivered = 0;
  s.failure = nullptr;
  struct Reset {
    Impl& s;
    ~Reset() { s.on_event = nullptr; }
  } reset{s};
  if (timeout_ms == 0) {
    // The final drain: everything written so far. A completion newer than the first round's
    // start is only joinable after another.
    for (int round = 0; round < 3 && (round == 0 || !s.pending.empty()); ++round) {
      s.flush_and_drain(true);
    }
    return s.delivered;
  }
  // Events wait in per-CPU batches until one fills: every flush_interval_ns (less often while
  // nothing waits) flush the CPUs whose batches hold old entries (each flush is an IPI). Sleep
  // until data wakes us, the next check is due, or the timeout ends.
  const std::uint64_t deadline =
      timeout_ms < 0 ? UINT64_MAX : monotonic_ns() + std::uint64_t(timeout_ms) * 1'000'000;
  for (;;) {
    const std::uint64_t now = monotonic_ns();
    const std::uint64_t next_flush = s.last_check_ns + (s.flush_interval_ns << s.idle_checks);
    if (now >= next_flush) {
      s.flush_and_drain(false);
    } else if (now >= deadline) {
      break;
    } else {
      const std::uint64_t wait_ms = (std::min(deadline, next_flush) - now + 999'999) / 1'000'000;
      const int rc = ring_buffer__poll(s.ring.get(), static_cast<int>(wait_ms));
      if (s.failure) std::rethrow_exception(s.failure);
      if (rc < 0 && rc != -EINTR) throw system_error("reading the pfilter ring buffer", -rc);
      s.drain();  // what the wakeup brought made completions joinable
    }
    if (s.delivered > 0) break;
  }
  return s.delivered;
}

std::uint64_t Probe::lost_events() const {
  return impl_->counter(V2P_COUNTER_RING_FULL) + impl_->recursion_misses();
}

std::uint64_t Probe::committed_events() const {
  return impl_->counter(V2P_COUNTER_EVENTS);
}

std::uint64_t Probe::suppressed_bios() const {
  return impl_->counter(V2P_COUNTER_SUPPRESSED);
}

std::uint64_t Probe::untagged_bios() const {
  return impl_->counter(V2P_COUNTER_UNTAGGED);
}

std::uint64_t Probe::uncounted_ios() const {
  return impl_->counter(V2P_COUNTER_STATS_FULL);
}

bool Probe::suppressing() const noexcept {
  return impl_->suppressing;
}

int Probe::slot_table_fd() const noexcept {
  return bpf_map__fd(impl_->skel->maps.v2p_slot_table);
}

std::uint32_t Probe::add_export(std::uint32_t tgid) {
  if (tgid == 0) throw Error("an export's process id cannot be 0");
  std::uint32_t* rows = impl_->skel->bss->v2p_slot_row_tgid;
  std::optional<std::uint32_t> free_row;
  for (std::uint32_t r = 0; r < V2P_SLOT_ROWS; ++r) {
    const std::uint32_t owner = __atomic_load_n(&rows[r], __ATOMIC_RELAXED);
    if (owner == tgid) return r;
    if (owner == 0 && !free_row) free_row = r;
  }
  if (!free_row) {
    throw Error("the slot table is full: at most " + std::to_string(V2P_SLOT_ROWS) +
                " export processes can publish slot contexts");
  }
  // A row's entries are cleared when its export goes, so a new owner starts with none.
  __atomic_store_n(&rows[*free_row], tgid, __ATOMIC_RELEASE);
  return *free_row;
}

void Probe::add_full_stream_process(std::uint32_t tgid) {
  if (!impl_->suppressing || tgid == 0) return;
  std::uint32_t* set = impl_->skel->bss->v2p_full_stream_tgid;
  std::uint32_t* free_entry = nullptr;
  for (std::uint32_t i = 0; i < V2P_SET_INLINE; ++i) {
    const std::uint32_t t = __atomic_load_n(&set[i], __ATOMIC_RELAXED);
    if (t == tgid) return;
    if (t == 0 && free_entry == nullptr) free_entry = &set[i];
  }
  if (free_entry == nullptr) {
    throw Error("at most " + std::to_string(V2P_SET_INLINE) +
                " backend processes get the full stream while repeats are suppressed");
  }
  __atomic_store_n(free_entry, tgid, __ATOMIC_RELEASE);
}

void Probe::remove_full_stream_process(std::uint32_t tgid) {
  if (tgid == 0) return;
  std::uint32_t* set = impl_->skel->bss->v2p_full_stream_tgid;
  for (std::uint32_t i = 0; i < V2P_SET_INLINE; ++i) {
    if (__atomic_load_n(&set[i], __ATOMIC_RELAXED) == tgid) {
      __atomic_store_n(&set[i], 0u, __ATOMIC_RELEASE);
    }
  }
}

void Probe::remove_export(std::uint32_t tgid) {
  if (tgid == 0) return;
  std::uint32_t* rows = impl_->skel->bss->v2p_slot_row_tgid;
  for (std::uint32_t r = 0; r < V2P_SLOT_ROWS; ++r) {
    if (__atomic_load_n(&rows[r], __ATOMIC_RELAXED) != tgid) continue;
    __atomic_store_n(&rows[r], 0u, __ATOMIC_RELEASE);
    const v2p_slot_context unset{};
    for (std::uint32_t slot = 0; slot < V2P_SLOTS_PER_ROW; ++slot) {
      const std::uint32_t index = r * V2P_SLOTS_PER_ROW + slot;
      bpf_map__update_elem(impl_->skel->maps.v2p_slot_table, &index, sizeof index, &unset,
                           sizeof unset, BPF_ANY);
    }
  }
}

std::vector<DeviceStats> Probe::device_stats() const {
  return read_device_stats(bpf_map__fd(impl_->skel->maps.v2p_device_stats));
}

std::vector<VdiskStats> Probe::vdisk_stats() const {
  return read_vdisk_stats(bpf_map__fd(impl_->skel->maps.v2p_vdisk_stats));
}

std::uint64_t Probe::unreported_completions() const {
  return impl_->inflight ? impl_->inflight->evicted() : 0;
}

std::uint64_t Probe::unmatched_completions() const {
  return impl_->unmatched.load(std::memory_order_relaxed);
}

void Probe::add_device(DeviceId d) {
  if (impl_->filter_devices) impl_->add_device(d.kernel());
}

void Probe::add_tgid(std::uint32_t tgid) {
  if (impl_->filter_tgids) impl_->add_tgid(tgid);
}

const std::filesystem::path& Probe::pin_dir() const noexcept {
  return impl_->pin_path;
}

}  // namespace v2p::pfilter
