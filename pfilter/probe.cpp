#include "pfilter/probe.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
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
// on_sample tells the two kinds of ring record apart by their size.
static_assert(sizeof(v2p_complete_record) != sizeof(v2p_blockio_event));
static_assert(V2P_EVENT_QUEUE == static_cast<int>(PhysEventKind::kQueue) &&
              V2P_EVENT_REMAP == static_cast<int>(PhysEventKind::kRemap) &&
              V2P_EVENT_COMPLETE == static_cast<int>(PhysEventKind::kComplete));

namespace {

// libbpf reports why a load failed through its print callback; keep the last warning so the
// exception can say it in one line.
std::mutex g_libbpf_mutex;
std::string g_libbpf_last;

int libbpf_print(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[512];
  const int n = std::vsnprintf(line, sizeof line, format, args);
  std::string s(line, n > 0 ? std::min<std::size_t>(n, sizeof line - 1) : 0);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  if (!s.empty()) g_libbpf_last = s;
  return 0;
}

struct SkeletonDeleter {
  void operator()(blockio_bpf* s) const noexcept { blockio_bpf__destroy(s); }
};
struct RingDeleter {
  void operator()(ring_buffer* r) const noexcept { ring_buffer__free(r); }
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
  std::optional<PinDirectory> pins;  // destroyed before the skeleton: unpin, then detach
  std::filesystem::path pin_path;
  ReqFlagBits bits;
  bool filter_devices = false;
  bool filter_tgids = false;
  std::unique_ptr<CompletionJoin> inflight;  // with completions only
  std::uint64_t flush_interval_ns = 0;
  std::uint64_t last_flush_ns = 0;
  std::atomic<std::uint64_t> unmatched{0};  // read by other threads for statistics

  // State of the poll() in progress, read by the ring buffer callback.
  const std::function<void(const PhysEvent&)>* on_event = nullptr;
  std::size_t delivered = 0;
  std::exception_ptr failure;

  static int on_sample(void* ctx, void* data, std::size_t size) noexcept;
  std::uint64_t counter(std::uint32_t which) const;
  std::uint64_t recursion_misses() const;
  void flush_batches();
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
    if (size == sizeof(v2p_complete_record)) {
      if (!self->inflight) return 0;
      v2p_complete_record c;
      std::memcpy(&c, data, sizeof c);
      const std::uint32_t n = std::min<std::uint32_t>(c.count, V2P_COMPLETE_BATCH);
      for (std::uint32_t i = 0; i < n; ++i) {
        PhysEvent e;
        // Bios queued before the probe attached, or by processes the filter excludes, have no
        // queue event: nothing to report.
        if (!self->inflight->completed(c.bios[i], c.ts_ns[i], errno_from_blk_status(c.status[i]),
                                       e)) {
          self->unmatched.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        // An exception here drops the rest of this record's bios (the record is consumed).
        (*self->on_event)(e);
        ++self->delivered;
      }
      return 0;
    }
    if (size < sizeof(PhysEvent)) return 0;
    PhysEvent e;
    std::memcpy(&e, data, sizeof e);
    e.op = static_cast<std::uint8_t>(io_op_from_cmd_flags(e.cmd_flags, e.bytes, self->bits));
    if (e.kind == V2P_EVENT_QUEUE) {
      // The kernel put the bio's address there, for the join with its completion.
      if (self->inflight && e.latency_ns != 0) self->inflight->queued(e.latency_ns, e);
      e.latency_ns = 0;
    }
    (*self->on_event)(e);
    ++self->delivered;
  } catch (...) {
    // Unwinding through libbpf's C frames is not allowed; stop the drain and rethrow outside.
    self->failure = std::current_exception();
    return -ECANCELED;
  }
  return 0;
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

// Runs the flush program on every CPU, so completions in unfilled batches reach the ring. A CPU
// that is offline has no batch in the making (ENXIO). Any other failure throws: completions would
// otherwise wait, unreported, until their batch fills (up to 15 per CPU, for ever when I/O stops).
void Probe::Impl::flush_batches() {
  const int fd = bpf_program__fd(skel->progs.v2p_complete_flush);
  const int cpus = libbpf_num_possible_cpus();
  for (int cpu = 0; cpu < cpus; ++cpu) {
    LIBBPF_OPTS(bpf_test_run_opts, run, .flags = BPF_F_TEST_RUN_ON_CPU,
                .cpu = static_cast<__u32>(cpu));
    if (const int rc = bpf_prog_test_run_opts(fd, &run); rc < 0 && rc != -ENXIO) {
      throw system_error("running the completion flush on CPU " + std::to_string(cpu) +
                             " (BPF_PROG_TEST_RUN; --no-completions does without it)",
                         -rc);
    }
  }
}

void Probe::Impl::pin() {
  bpf_program* progs[] = {skel->progs.v2p_bio_queue, skel->progs.v2p_bio_remap,
                          skel->progs.v2p_rq_done, skel->progs.v2p_bio_done,
                          skel->progs.v2p_complete_flush};
  for (bpf_program* p : progs) {
    if (!bpf_program__autoload(p)) continue;
    const auto path = pins->entry(bpf_program__name(p));
    if (bpf_program__pin(p, path.c_str()) != 0) throw system_error("cannot pin " + path.string());
  }
  bpf_map* maps[] = {skel->maps.v2p_events, skel->maps.v2p_devices, skel->maps.v2p_tgids,
                     skel->maps.v2p_counters, skel->maps.v2p_complete_batches};
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
  std::lock_guard<std::mutex> lock(g_libbpf_mutex);
  g_libbpf_last.clear();
  libbpf_set_print(libbpf_print);
  impl->skel.reset(blockio_bpf__open());
  if (!impl->skel) throw system_error("cannot open the pfilter eBPF object");
  auto& skel = *impl->skel;
  skel.rodata->filter_devices = impl->filter_devices;
  skel.rodata->filter_tgids = impl->filter_tgids;
  skel.rodata->track_completions = options.completions;
  skel.rodata->wakeup_bytes = options.wakeup_bytes;
  skel.rodata->bio_remapped_bit = static_cast<std::uint8_t>(bio_remapped_bit().value_or(0xff));
  bpf_map__set_max_entries(skel.maps.v2p_events, options.ring_bytes);
  if (options.completions) impl->inflight = std::make_unique<CompletionJoin>();
  impl->flush_interval_ns = std::uint64_t{options.completion_flush_ms} * 1'000'000;
  bpf_program__set_autoload(skel.progs.v2p_rq_done, options.completions);
  bpf_program__set_autoload(skel.progs.v2p_bio_done, options.completions);
  bpf_program__set_autoload(skel.progs.v2p_complete_flush, options.completions);
  bpf_program__set_autoattach(skel.progs.v2p_complete_flush, false);
  if (const int rc = blockio_bpf__load(&skel); rc != 0) {
    throw Error("loading the pfilter eBPF programs failed (" + std::string(std::strerror(-rc)) +
                "): " + (g_libbpf_last.empty() ? "no detail from libbpf" : g_libbpf_last));
  }
  // A kernel that cannot run the flush fails here, before anything is attached.
  if (options.completions) impl->flush_batches();
  for (const auto d : options.devices) impl->add_device(d.kernel());
  for (const auto t : options.tgids) impl->add_tgid(t);
  if (const int rc = blockio_bpf__attach(&skel); rc != 0) {
    throw Error("attaching the pfilter programs to the block tracepoints failed (" +
                std::string(std::strerror(-rc)) + "): " + g_libbpf_last);
  }
  if (options.pin) impl->pin();
  impl->ring.reset(
      ring_buffer__new(bpf_map__fd(skel.maps.v2p_events), &Impl::on_sample, impl.get(), nullptr));
  if (!impl->ring) throw system_error("cannot map the pfilter ring buffer");
  return std::unique_ptr<Probe>(new Probe(std::move(impl)));
}

std::size_t Probe::poll(int timeout_ms, const std::function<void(const PhysEvent&)>& on_event) {
  Impl& s = *impl_;
  s.on_event = &on_event;
  s.delivered = 0;
  s.failure = nullptr;
  // The kernel wakes us only when we have caught up; consume() then drains what arrived since.
  int rc = ring_buffer__poll(s.ring.get(), timeout_ms);
  if (s.inflight && !s.failure) {
    // Completions wait in per-CPU batches until one fills: collect the unfilled ones now and
    // then (each flush is an IPI per CPU) and always on poll(0), the final drain.
    const std::uint64_t now = monotonic_ns();
    if (timeout_ms == 0 || now - s.last_flush_ns >= s.flush_interval_ns) {
      s.flush_batches();
      s.last_flush_ns = now;
    }
  }
  if (rc >= 0 && !s.failure) rc = ring_buffer__consume(s.ring.get());
  s.on_event = nullptr;
  if (s.failure) std::rethrow_exception(s.failure);
  if (rc < 0 && rc != -EINTR) throw system_error("reading the pfilter ring buffer", -rc);
  return s.delivered;
}

std::uint64_t Probe::lost_events() const {
  return impl_->counter(V2P_COUNTER_RING_FULL) + impl_->recursion_misses();
}

std::uint64_t Probe::committed_events() const {
  return impl_->counter(V2P_COUNTER_EVENTS);
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
