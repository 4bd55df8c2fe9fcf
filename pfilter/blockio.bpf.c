// SPDX-License-Identifier: GPL-2.0
/* pfilter: block-layer events for v2p. Only tracepoints (tp_btf): kprobes and fentry are not
 * available on the project's kernels. Filters are checked first, so I/O nobody asked about costs
 * a few loads and compares and nothing else. The logic that can live in user space does (op
 * decoding, error conversion, formatting); see pfilter/events.cpp.
 *
 * Cost matters: every bio of the machine passes through here (measured per call in
 * docs/pfilter.md). tp_btf arguments are typed kernel pointers, so fields are read with plain
 * loads (CO-RE relocated through vmlinux.h's preserve_access_index, fault-safe: the verifier
 * turns them into exception-table loads) instead of one bpf_probe_read_kernel() helper call per
 * field as BPF_CORE_READ would. */
#include "vmlinux.h"

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "blockio.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by the loader before load; the verifier then removes the branches of inactive filters. */
const volatile bool filter_devices = false;
const volatile bool filter_tgids = false;
const volatile bool track_completions = true;
/* 0: the kernel's default, a wakeup whenever the consumer has caught up (lowest latency).
 * Otherwise wake the consumer only when this much data is waiting: far fewer wakeups under load,
 * and the consumer's poll timeout bounds the delay when I/O is sparse. */
const volatile __u64 wakeup_bytes = 0;
/* Bit of BIO_REMAPPED in bio->bi_flags (from BTF by the loader; 0xff: unknown). Set once a
 * partition remap has made bi_sector absolute on the whole disk, which happens before
 * block_bio_queue on 6.18 (measured) and after it on older kernels. */
const volatile __u8 bio_remapped_bit = 0xff;
/* Count a bio the map already knows instead of sending it (off: --every-bio, and with
 * completions, whose user-space join needs every queue event). */
const volatile bool suppress_repeats = false;
const volatile __u32 seen_set_mask = 0;

/* The filter sets. The first V2P_SET_INLINE members live in these arrays (.bss, written by the
 * loader through the skeleton's memory mapping, also while attached), checked with a few compares
 * and no helper call; 0 marks a free entry. Members beyond that, and the value 0 itself, go to
 * the hash maps below, which are only looked up once the loader has set *_overflow. */
__u32 v2p_dev_set[V2P_SET_INLINE];
__u32 v2p_tgid_set[V2P_SET_INLINE];
__u32 v2p_dev_overflow;
__u32 v2p_tgid_overflow;

/* Processes whose every bio is sent even while repeats are suppressed (0: free entry): the
 * backends of opaque exports, whose untagged bios the correlator's window join needs. Written by
 * the loader (Probe::add_full_stream_process). */
__u32 v2p_full_stream_tgid[V2P_SET_INLINE];

/* The export process owning each row of v2p_slot_table (0: free), written by the loader. A few
 * compares instead of a hash lookup per tagged bio. */
__u32 v2p_slot_row_tgid[V2P_SLOT_ROWS];
/* Bumped by every discard: a discarded range may be reallocated to anything, so every entry of
 * v2p_seen_at recorded before is stale (see blockio.h). */
__u32 v2p_epoch;

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 16 << 20); /* the loader overrides this with ProbeOptions::ring_bytes */
} v2p_events SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1024);
  __type(key, __u32); /* kernel dev_t */
  __type(value, __u8);
} v2p_devices SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1024);
  __type(key, __u32); /* tgid */
  __type(value, __u8);
} v2p_tgids SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, V2P_COUNTER_SLOTS);
  __type(key, __u32);
  __type(value, __u64);
} v2p_counters SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, V2P_BATCH_SLOTS);
  __type(key, __u32);
  __type(value, struct v2p_complete_batch);
} v2p_complete_batches SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct v2p_event_batch);
} v2p_event_batches SEC(".maps");

/* Per CPU and batch (V2P_SINCE_SLOT; the loader sizes it): the time of the oldest entry waiting
 * in that batch, 0 when none waits. User space reads it through a memory mapping, to know which
 * completions it may join (see blockio.h) and which CPUs need a flush. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(map_flags, BPF_F_MMAPABLE);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} v2p_unsent_since SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(map_flags, BPF_F_MMAPABLE);
  __uint(max_entries, V2P_SLOT_ROWS* V2P_SLOTS_PER_ROW);
  __type(key, __u32);
  __type(value, struct v2p_slot_context);
} v2p_slot_table SEC(".maps");

/* The loader sizes both (ProbeOptions::seen_ranges / V2P_SEEN_WAYS sets, a power of two) and
 * sets seen_set_mask to the sets - 1. Mmapable so the values start on a page boundary: each
 * 64-byte set is one cache line. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(map_flags, BPF_F_MMAPABLE);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct v2p_seen_set);
} v2p_seen_at SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(map_flags, BPF_F_MMAPABLE);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct v2p_seen_set);
} v2p_seen_from SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, V2P_DEVICE_STATS_ENTRIES);
  __type(key, __u32);
  __type(value, struct v2p_device_stats);
} v2p_device_stats SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, V2P_VDISK_STATS_ENTRIES);
  __type(key, __u32);
  __type(value, struct v2p_vdisk_stats);
} v2p_vdisk_stats SEC(".maps");

static __always_inline void count(__u32 counter, __u32 prog, __u64 n) {
  __u32 slot = V2P_COUNTER_SLOT(counter, prog);
  __u64* v = bpf_map_lookup_elem(&v2p_counters, &slot);
  if (v) *v += n;
}

/* Whether key is in a filter set: the inline entries first, the hash map only if it has any. */
static __always_inline bool in_set(const __u32* inline_set, const __u32* overflow, void* map,
                                   __u32 key) {
  if (key != 0) {
#pragma unroll
    for (int i = 0; i < V2P_SET_INLINE; i++) {
      if (inline_set[i] == key) return true;
    }
  }
  return *(volatile const __u32*)overflow && bpf_map_lookup_elem(map, &key);
}

static __always_inline bool tgid_wanted(__u32 tgid) {
  return !filter_tgids || in_set(v2p_tgid_set, &v2p_tgid_overflow, &v2p_tgids, tgid);
}

static __always_inline bool dev_wanted(__u32 dev) {
  return !filter_devices || in_set(v2p_dev_set, &v2p_dev_overflow, &v2p_devices, dev);
}

/* A full ring is counted, never silent: user space reports the count as lost events. The caller
 * writes every field of the event (no memset). */
static __always_inline struct v2p_blockio_event* reserve(__u32 prog) {
  struct v2p_blockio_event* e = bpf_ringbuf_reserve(&v2p_events, sizeof(*e), 0);
  if (!e) count(V2P_COUNTER_RING_FULL, prog, 1);
  return e;
}

/* The wakeup flags for a record of `size` bytes: wake once, as the backlog crosses the
 * threshold (reserved records count as waiting). */
static __always_inline __u64 wakeup_flags(__u64 size) {
  if (!wakeup_bytes) return 0;
  __u64 waiting = bpf_ringbuf_query(&v2p_events, BPF_RB_AVAIL_DATA);
  __u64 record = size + 8; /* plus the ring's record header */
  return waiting >= wakeup_bytes && waiting < wakeup_bytes + record ? BPF_RB_FORCE_WAKEUP
                                                                    : BPF_RB_NO_WAKEUP;
}

static __always_inline void submit(struct v2p_blockio_event* e, __u32 prog) {
  bpf_ringbuf_submit(e, wakeup_flags(sizeof(*e)));
  count(V2P_COUNTER_EVENTS, prog, 1);
}

/* Sends a batch's record to the ring (counted as its n events, as user space delivers one event
 * per entry) and empties it. A full ring loses the batch, counted. */
#define SEND_RECORD(b, prog)                                               \
  do {                                                                     \
    __u32 n_ = (b)->record.count;                                          \
    if (n_ == 0) break;                                                    \
    if (bpf_ringbuf_output(&v2p_events, &(b)->record, sizeof((b)->record), \
                           wakeup_flags(sizeof((b)->record))) == 0) {      \
      count(V2P_COUNTER_EVENTS, (prog), n_);                               \
    } else {                                                               \
      count(V2P_COUNTER_RING_FULL, (prog), n_);                            \
    }                                                                      \
    (b)->record.count = 0;                                                 \
  } while (0)

/* Marks a batch busy until release(); false when it is busy already (this program interrupted
 * another user of it on this CPU, see blockio.h). Only the same CPU competes for a per-CPU
 * batch, so compiler barriers are enough. */
static __always_inline bool claim(__u32* busy) {
  if (*(volatile __u32*)busy) return false;
  *(volatile __u32*)busy = 1;
  asm volatile("" ::: "memory"); /* the writes that follow stay after busy is set */
  return true;
}

static __always_inline void release(__u32* busy) {
  asm volatile("" ::: "memory");
  *(volatile __u32*)busy = 0;
}

/* This CPU's queue/remap event batch, claimed; NULL when busy. */
static __always_inline struct v2p_event_batch* event_batch_begin(void) {
  __u32 zero = 0;
  struct v2p_event_batch* b = bpf_map_lookup_elem(&v2p_event_batches, &zero);
  return b && claim(&b->busy) ? b : NULL;
}

static __always_inline void set_unsent_since(__u32 batch, __u64 ts_ns) {
  __u32 slot = V2P_SINCE_SLOT(bpf_get_smp_processor_id(), batch);
  __u64* since = bpf_map_lookup_elem(&v2p_unsent_since, &slot);
  if (since) *(volatile __u64*)since = ts_ns;
}

/* Sends an event batch and tells user space that nothing waits in it (after the ring has it). */
static __always_inline void send_events(struct v2p_event_batch* b, __u32 prog) {
  if (b->record.count == 0) return;
  SEND_RECORD(b, prog);
  set_unsent_since(V2P_SINCE_EVENTS, 0);
}

/* Sends this CPU's event batch unless it is busy (then its user sends it). */
static __always_inline void send_idle_events(__u32 prog) {
  struct v2p_event_batch* b = event_batch_begin();
  if (!b) return;
  send_events(b, prog);
  release(&b->busy);
}

/* Sends a completion batch, after this CPU's queue events: a bio completing on the CPU that
 * queued it then reaches user space after its queue event. */
static __always_inline void flush_batch(struct v2p_complete_batch* b, __u32 slot, __u32 prog) {
  if (b->record.count == 0) return;
  send_idle_events(prog);
  SEND_RECORD(b, prog);
  set_unsent_since(V2P_SINCE_COMPLETIONS(slot), 0);
}

/* The completion batch in `slot` on this CPU, claimed; NULL when busy. */
static __always_inline struct v2p_complete_batch* batch_begin(__u32 slot) {
  struct v2p_complete_batch* b = bpf_map_lookup_elem(&v2p_complete_batches, &slot);
  return b && claim(&b->busy) ? b : NULL;
}

static __always_inline void batch_end(struct v2p_complete_batch* b) {
  release(&b->busy);
}

/* One completed bio in a record of its own, for when the batch is busy. */
static __always_inline void send_alone(__u32 prog, __u64 bio, __u64 ts_ns, __u8 status) {
  struct v2p_complete_record* r = bpf_ringbuf_reserve(&v2p_events, sizeof(*r), 0);
  if (!r) {
    count(V2P_COUNTER_RING_FULL, prog, 1);
    return;
  }
  r->count = 1;
  r->reserved = 0;
  r->status[0] = status;
  r->ts_ns[0] = ts_ns;
  r->bios[0] = bio;
  bpf_ringbuf_submit(r, wakeup_flags(sizeof(*r)));
  count(V2P_COUNTER_EVENTS, prog, 1);
}

/* Appends one completed bio to the batch in `slot`, sending the batch when it is full. */
static __always_inline void batch_add(struct v2p_complete_batch* b, __u32 slot, __u32 prog,
                                      __u64 bio, __u64 ts_ns, __u8 status) {
  __u32 n = b->record.count;
  if (n >= V2P_COMPLETE_BATCH) { /* not reached: a full batch is sent at once */
    flush_batch(b, slot, prog);
    n = 0;
  }
  b->record.bios[n] = bio;
  b->record.ts_ns[n] = ts_ns;
  b->record.status[n] = status;
  b->record.count = n + 1;
  if (n == 0) set_unsent_since(V2P_SINCE_COMPLETIONS(slot), ts_ns);
  if (n + 1 == V2P_COMPLETE_BATCH) flush_batch(b, slot, prog);
}

/* Appends to the batch, or sends alone when the batch was busy (b NULL). */
static __always_inline void complete_bio(struct v2p_complete_batch* b, __u32 slot, __u32 prog,
                                         __u64 bio, __u64 ts_ns, __u8 status) {
  if (b)
    batch_add(b, slot, prog, bio, ts_ns, status);
  else
    send_alone(prog, bio, ts_ns, status);
}

/* The task's name, as bpf_get_current_comm() gives it but with two loads instead of a helper
 * call and strscpy (measured: about 80 ns less per event). The kernel keeps comm NUL-terminated
 * and zero-padded (__set_task_comm() uses strscpy_pad); a rename racing with this read can mix
 * the old and the new name, as it can for /proc/PID/comm. */
static __always_inline void copy_comm(char* dst, struct task_struct* task) {
  __u64* d = (__u64*)dst;
  d[0] = *(__u64*)&task->comm[0];
  d[1] = *(__u64*)&task->comm[8];
}

/* The whole disk a bdev belongs to, as the kernel's disk_devt() computes it. */
static __always_inline __u32 disk_dev(struct block_device* bdev) {
  struct gendisk* disk = bdev->bd_disk;
  return ((__u32)disk->major << 20) | (__u32)disk->first_minor;
}

/* The device a bio's sector is relative to: the partition before its remap, the whole disk
 * after it. *wanted: the filter names that device or (after the remap) the partition. */
static __always_inline __u32 bio_dev(struct bio* bio, bool* wanted) {
  struct block_device* bdev = bio->bi_bdev;
  __u32 part_dev = bdev->bd_dev;
  if (bio_remapped_bit < 16 && (bio->bi_flags >> bio_remapped_bit) & 1) {
    __u32 dev = disk_dev(bdev);
    *wanted = dev_wanted(dev) || (dev != part_dev && dev_wanted(part_dev));
    return dev;
  }
  *wanted = dev_wanted(part_dev);
  return part_dev;
}

/* ---- Counters and the suppression of repeats (blockio.h; docs/pfilter.md) ---- */

static __always_inline __u32 op_class(__u32 opf) {
  switch (opf & 0xff) { /* REQ_OP_* */
    case 0:             /* REQ_OP_READ */
      return V2P_OP_READ;
    case 1: /* REQ_OP_WRITE */
    case 9: /* REQ_OP_WRITE_ZEROES */
      return V2P_OP_WRITE;
    case 3: /* REQ_OP_DISCARD */
    case 5: /* REQ_OP_SECURE_ERASE */
      return V2P_OP_DISCARD;
    default:
      return V2P_OP_OTHER;
  }
}

/* splitmix64's finalizer: every input bit moves every output bit. */
static __always_inline __u64 mix64(__u64 x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

/* The tag slot in an ioprio hint (v2p/tag.hpp); 0: untagged. */
static __always_inline __u32 ioprio_slot(__u16 ioprio) {
  return (ioprio >> 3) & (V2P_SLOTS_PER_ROW - 1);
}

/* The context the export published for the bio's slot; false when untagged, when the process
 * has no row, or when the slot was never written. */
static __always_inline bool slot_context(__u32 tgid, __u16 ioprio, struct v2p_slot_context* out) {
  __u32 slot = ioprio_slot(ioprio);
  if (slot == 0 || tgid == 0) return false;
  __u32 row = V2P_SLOT_ROWS;
#pragma unroll
  for (int i = 0; i < V2P_SLOT_ROWS; i++) {
    if (v2p_slot_row_tgid[i] == tgid) row = i;
  }
  if (row >= V2P_SLOT_ROWS) return false;
  __u32 index = row * V2P_SLOTS_PER_ROW + slot;
  struct v2p_slot_context* c = bpf_map_lookup_elem(&v2p_slot_table, &index);
  if (!c) return false;
  *out = *c;
  return out->generation != 0;
}

/* The counter entry of {vm, vdisk, op} on this CPU, taken on first use; NULL when the table is
 * full around the key's hash. */
static __always_inline struct v2p_vdisk_stats* vdisk_entry(__u32 vm, __u32 vdisk, __u32 op) {
  __u32 h = (__u32)mix64(((__u64)vm << 32) | vdisk);
#pragma unroll
  for (int i = 0; i < V2P_STATS_PROBES; i++) {
    __u32 index = (((h + i) * V2P_OP_CLASSES) + op) & (V2P_VDISK_STATS_ENTRIES - 1);
    struct v2p_vdisk_stats* v = bpf_map_lookup_elem(&v2p_vdisk_stats, &index);
    if (!v) return NULL;
    if (v->used && v->vm == vm && v->vdisk == vdisk && v->op_class == op) return v;
    if (!v->used) {
      v->vm = vm;
      v->vdisk = vdisk;
      v->op_class = op;
      v->used = 1;
      return v;
    }
  }
  return NULL;
}

static __always_inline void count_vdisk(const struct v2p_slot_context* c, __u32 op, __u32 bytes) {
  struct v2p_vdisk_stats* v = vdisk_entry(c->vm, c->vdisk, op);
  if (!v) {
    count(V2P_COUNTER_STATS_FULL, V2P_PROG_QUEUE, 1);
    return;
  }
  v->ios += 1;
  v->bytes += bytes;
}

static __always_inline __u32 latency_bucket(__u64 ns) {
  __u64 us = ns / 1000;
  __u32 b = 0;
#pragma unroll
  for (int shift = 32; shift > 0; shift /= 2) {
    if (us >> shift) {
      us >>= shift;
      b += shift;
    }
  }
  return b < V2P_LATENCY_BUCKETS ? b : V2P_LATENCY_BUCKETS - 1;
}

/* A device named in the inline filter set has its entries at its position there (one compare
 * per member, no hash); any other device, or one whose position held another device before,
 * is placed by hash in the rest of the table. */
static __always_inline struct v2p_device_stats* device_entry(__u32 dev, __u32 op) {
#pragma unroll
  for (int i = 0; i < V2P_SET_INLINE; i++) {
    if (v2p_dev_set[i] == dev) {
      __u32 index = i * V2P_OP_CLASSES + op;
      struct v2p_device_stats* v = bpf_map_lookup_elem(&v2p_device_stats, &index);
      if (!v) return NULL;
      if (!v->used) {
        v->dev = dev;
        v->op_class = op;
        v->used = 1;
      }
      if (v->dev == dev) return v;
      break; /* the position held another device before: place this one by hash */
    }
  }
  __u32 h = (__u32)mix64(dev);
#pragma unroll
  for (int i = 0; i < V2P_STATS_PROBES; i++) {
    __u32 index = V2P_DEVICE_STATS_HASHED +
                  ((((h + i) * V2P_OP_CLASSES) + op) & (V2P_DEVICE_STATS_HASHED - 1));
    struct v2p_device_stats* v = bpf_map_lookup_elem(&v2p_device_stats, &index);
    if (!v) return NULL;
    if (v->used && v->dev == dev && v->op_class == op) return v;
    if (!v->used) {
      v->dev = dev;
      v->op_class = op;
      v->used = 1;
      return v;
    }
  }
  return NULL;
}

/* One completed request (or the part nr_bytes of it) in its disk's counters; the latency from
 * the request's start time, which blk-mq stamps when the queue keeps I/O statistics (0 when it
 * does not: counted without a latency, and without reading the clock). */
static __always_inline void count_device(struct request* rq, __u32 nr_bytes) {
  struct gendisk* disk = rq->q->disk;
  if (!disk) return;
  __u32 dev = ((__u32)disk->major << 20) | (__u32)disk->first_minor;
  struct v2p_device_stats* v = device_entry(dev, op_class(rq->cmd_flags));
  if (!v) {
    count(V2P_COUNTER_STATS_FULL, V2P_PROG_RQ_DONE, 1);
    return;
  }
  v->ios += 1;
  v->bytes += nr_bytes;
  __u64 start = rq->start_time_ns;
  if (start == 0) return;
  __u64 now = bpf_ktime_get_ns();
  if (start <= now) v->latency_us_log2[latency_bucket(now - start) & 31] += 1;
}

#define V2P_GOLDEN 0x9e3779b97f4a7c15ULL

static __always_inline __u64 range_hash(__u32 dev, __u64 sector, __u32 bytes) {
  return mix64(sector ^ ((((__u64)dev << 32) | bytes) * V2P_GOLDEN));
}

static __always_inline __u64 owner_hash(__u32 tgid, bool known, const struct v2p_slot_context* c) {
  if (!known) return mix64(((__u64)tgid << 1) | 1); /* untagged: the process alone */
  return mix64(c->voffset ^ mix64(((__u64)tgid << 32 | c->vm) ^ mix64((__u64)c->vdisk << 1)));
}

static __always_inline __u64 virtual_hash(__u32 tgid, const struct v2p_slot_context* c,
                                          __u32 bytes) {
  return mix64(c->voffset ^
               mix64(((__u64)tgid << 32 | c->vm) ^ mix64((__u64)c->vdisk << 32 | bytes)));
}

/* The lower half of an entry for this owner (or physical range) hash and epoch, op bits clear. */
static __always_inline __u32 seen_value(__u64 hash, __u32 epoch) {
  return (__u32)(hash ^ ((epoch + 1) * V2P_GOLDEN)) & ~((1u << V2P_SEEN_OP_BITS) - 1);
}

/* A set per 32 KiB of a device (or of a vdisk), consecutive for consecutive regions, so a working
 * set occupies as many cache lines and pages of the table as its span needs: hashed indexes
 * spread even a small working set over the whole table, and each bio then paid a cache and TLB
 * miss (measured, docs/pfilter.md). The salt keeps devices (vdisks) apart. */
#define V2P_SEEN_REGION_SHIFT 15
static __always_inline __u32 seen_index(__u64 byte_offset, __u64 salt) {
  return (__u32)(byte_offset >> V2P_SEEN_REGION_SHIFT) + (__u32)((salt * V2P_GOLDEN) >> 32);
}

/* The way holding `key`'s range in set `index` (*found), or the way it would take: a free one if
 * there is one (else two ranges of one set could evict each other for ever), otherwise one
 * chosen by the key's low bits. NULL only if the map lookup fails, which it cannot for an
 * index within the array. */
static __always_inline __u64* seen_way(void* map, __u32 index, __u64 key, bool* found) {
  __u32 name = (__u32)(key >> 32);
  index &= seen_set_mask;
  struct v2p_seen_set* set = bpf_map_lookup_elem(map, &index);
  *found = false;
  if (!set) return NULL;
  __u64* victim = &set->way[(key >> 29) & (V2P_SEEN_WAYS - 1)];
  bool have_free = false;
#pragma unroll
  for (int i = 0; i < V2P_SEEN_WAYS; i++) {
    __u64 w = *(volatile __u64*)&set->way[i];
    if (w != 0 && (__u32)(w >> 32) == name) {
      *found = true;
      return &set->way[i];
    }
    if (w == 0 && !have_free) {
      victim = &set->way[i];
      have_free = true;
    }
  }
  return victim;
}

static __always_inline void seen_write(__u64* way, __u64 key, __u32 value) {
  *(volatile __u64*)way = (key & 0xffffffff00000000ULL) | value;
}

/* Whether the map already knows what this bio would tell it, so it is counted and not sent:
 * its physical range's last reported bio had the same owner (the same process and slot context,
 * or the same untagged process) with this op class, no discard came since, and, for a tagged bio,
 * its virtual range's last reported bio was at this physical range. Anything else is reported
 * and becomes the new knowledge. Discards, flushes and bios without data are always reported;
 * a tagged bio without a known context is reported and makes its range unknown. */
static __always_inline bool already_reported(__u32 dev, __u64 sector, __u32 bytes, __u32 tgid,
                                             __u16 ioprio, __u32 op, bool known,
                                             const struct v2p_slot_context* c) {
  if (op == V2P_OP_DISCARD) {
    __sync_fetch_and_add(&v2p_epoch, 1);
    return false;
  }
  if (op != V2P_OP_READ && op != V2P_OP_WRITE) return false;
  if (bytes == 0) return false;
  __u32 epoch = *(volatile __u32*)&v2p_epoch;
  __u64 at = range_hash(dev, sector, bytes);
  bool seen = false;
  __u64* e = seen_way(&v2p_seen_at, seen_index(sector << 9, dev), at, &seen);
  if (!e) return false;
  bool tagged = ioprio_slot(ioprio) != 0;
  if (tagged && !known) {
    if (seen) *(volatile __u64*)e = 0;
    return false;
  }
  __u32 old = seen ? (__u32) * (volatile __u64*)e : 0;
  __u32 owner = seen_value(owner_hash(tgid, known, c), epoch);
  bool same_owner = seen && (old & ~((1u << V2P_SEEN_OP_BITS) - 1)) == owner;
  bool placed_here = true;
  if (known) {
    __u64 from = virtual_hash(tgid, c, bytes);
    bool from_seen = false;
    __u64* f =
        seen_way(&v2p_seen_from,
                 seen_index(c->voffset, ((__u64)tgid << 32 | c->vm) ^ ((__u64)c->vdisk << 16)),
                 from, &from_seen);
    __u32 here = seen_value(at, epoch);
    placed_here = from_seen && (__u32) * (volatile __u64*)f == here;
    if (!placed_here && f) seen_write(f, from, here);
  }
  __u32 op_bit = 1u << op;
  if (same_owner && placed_here && (old & op_bit)) return true;
  seen_write(e, at,
             owner | (same_owner && placed_here ? (old & ((1u << V2P_SEEN_OP_BITS) - 1)) | op_bit
                                                : op_bit));
  return false;
}

/* Every field written explicitly (no memset): the ring buffer slot is not zeroed for us. */
static __always_inline void fill_bio_event(struct v2p_blockio_event* e, struct bio* bio,
                                           struct task_struct* task, __u32 dev, __u32 tgid,
                                           __u8 kind, __u32 old_dev, __u64 old_sector,
                                           __u64 cookie) {
  e->ts_ns = bpf_ktime_get_ns();
  e->sector = bio->bi_iter.bi_sector;
  e->old_sector = old_sector;
  e->latency_ns = cookie;
  e->dev = dev;
  e->old_dev = old_dev;
  e->bytes = bio->bi_iter.bi_size;
  e->tgid = tgid;
  e->tid = task->pid;
  e->cmd_flags = bio->bi_opf;
  e->ioprio = bio->bi_ioprio;
  e->op = 0;
  e->kind = kind;
  e->error = 0;
  copy_comm(e->comm, task);
}

/* Appends a queue or remap event to this CPU's batch, sending the batch when it fills; in a record
 * of its own when the batch is busy (this program interrupted the other one, or the flush, on
 * this CPU). */
static __always_inline void emit_bio_event(struct bio* bio, struct task_struct* task, __u32 dev,
                                           __u32 tgid, __u8 kind, __u32 old_dev, __u64 old_sector,
                                           __u64 cookie, __u32 prog) {
  struct v2p_event_batch* b = event_batch_begin();
  if (!b) {
    struct v2p_blockio_event* e = reserve(prog);
    if (!e) return;
    fill_bio_event(e, bio, task, dev, tgid, kind, old_dev, old_sector, cookie);
    submit(e, prog);
    return;
  }
  __u32 n = b->record.count;
  if (n >= V2P_EVENT_BATCH) { /* not reached: a full batch is sent at once */
    send_events(b, prog);
    n = 0;
  }
  struct v2p_blockio_event* e = &b->record.events[n];
  fill_bio_event(e, bio, task, dev, tgid, kind, old_dev, old_sector, cookie);
  b->record.count = n + 1;
  /* Published once the event is written; the bio reaches its driver only after this program
   * returns, so its completion is later than anything user space read before this store. */
  if (n == 0) set_unsent_since(V2P_SINCE_EVENTS, e->ts_ns);
  if (n + 1 == V2P_EVENT_BATCH) send_events(b, prog);
  release(&b->busy);
}

SEC("tp_btf/block_bio_queue")
int BPF_PROG(v2p_bio_queue, struct bio* bio) {
  /* The device test first: it rejects the I/O of the devices below a watched loop device, the
   * most common rejection, without a helper call. */
  bool wanted = false;
  __u32 dev = bio_dev(bio, &wanted);
  if (!wanted) return 0;
  struct task_struct* task = bpf_get_current_task_btf();
  __u32 tgid = task->tgid;
  if (!tgid_wanted(tgid)) return 0;

  __u16 ioprio = bio->bi_ioprio;
  __u32 bytes = bio->bi_iter.bi_size;
  __u32 op = op_class(bio->bi_opf);
  /* An untagged read or write tells the map nothing (the correlator counts it as unattributed
   * and never maps it; docs/pfilter.md): counted, not sent, and no table is looked at, so the
   * I/O of the host's other programs costs next to nothing. Its discards are still news. */
  bool full_stream = false;
  if (suppress_repeats) {
#pragma unroll
    for (int i = 0; i < V2P_SET_INLINE; i++) full_stream |= v2p_full_stream_tgid[i] == tgid;
  }
  if (suppress_repeats && !full_stream && ioprio_slot(ioprio) == 0 && bytes != 0 &&
      (op == V2P_OP_READ || op == V2P_OP_WRITE)) {
    count(V2P_COUNTER_UNTAGGED, V2P_PROG_QUEUE, 1);
    count(V2P_COUNTER_SUPPRESSED, V2P_PROG_QUEUE, 1);
    return 0;
  }
  struct v2p_slot_context context;
  bool known = slot_context(tgid, ioprio, &context);
  if (known) count_vdisk(&context, op, bytes);
  if (suppress_repeats && !full_stream &&
      already_reported(dev, bio->bi_iter.bi_sector, bytes, tgid, ioprio, op, known, &context)) {
    count(V2P_COUNTER_SUPPRESSED, V2P_PROG_QUEUE, 1);
    return 0;
  }

  /* With completions, the bio's address names it in its completion record (see blockio.h):
   * no per-bio state in the kernel. Root may store a kernel pointer's value (allow_ptr_leaks). */
  emit_bio_event(bio, task, dev, tgid, V2P_EVENT_QUEUE, 0, 0, track_completions ? (__u64)bio : 0,
                 V2P_PROG_QUEUE);
  return 0;
}

SEC("tp_btf/block_bio_remap")
int BPF_PROG(v2p_bio_remap, struct bio* bio, dev_t old_dev, sector_t old_sector) {
  /* A partition remap keeps bi_bdev on the partition and makes bi_sector absolute on the disk;
   * a stacking driver (dm) moves the bio to another bdev. Report the device bi_sector is on. */
  struct block_device* bdev = bio->bi_bdev;
  __u32 dev = bdev->bd_dev;
  if (dev == old_dev) dev = disk_dev(bdev);
  if (!dev_wanted(dev) && !dev_wanted(old_dev)) return 0;
  struct task_struct* task = bpf_get_current_task_btf();
  __u32 tgid = task->tgid;
  if (!tgid_wanted(tgid)) return 0;

  emit_bio_event(bio, task, dev, tgid, V2P_EVENT_REMAP, old_dev, old_sector, 0, V2P_PROG_REMAP);
  return 0;
}

/* blk-mq devices (loop, virtio, nvme, scsi) complete requests: block_bio_complete does not fire
 * for their bios on current kernels (measured on 6.18), so walk the request's bios here. The
 * submitter's identity and the queue time are in each bio's queue event, which user space joins. */
#define V2P_MAX_BIOS_PER_REQUEST 256

SEC("tp_btf/block_rq_complete")
int BPF_PROG(v2p_rq_done, struct request* rq, blk_status_t error, unsigned int nr_bytes) {
  struct bio* bio = rq->bio;
  if (filter_devices) {
    /* Requests of devices nobody watches (the disk below a watched loop device) leave here,
     * before the clock read and the batch. */
    if (!bio) return 0;
    bool wanted = false;
    bio_dev(bio, &wanted);
    if (!wanted) return 0;
  }
  count_device(rq, nr_bytes);
  if (!track_completions || !bio) return 0; /* !bio: a flush without data */
  __u64 now = bpf_ktime_get_ns();
  struct v2p_complete_batch* b = batch_begin(V2P_BATCH_RQ);
  __u32 done = 0;
  for (int i = 0; i < V2P_MAX_BIOS_PER_REQUEST && bio; i++) {
    /* A partial completion ends part of the request; later calls report the rest. */
    __u32 size = bio->bi_iter.bi_size;
    if (done + size > nr_bytes) break;
    done += size;
    complete_bio(b, V2P_BATCH_RQ, V2P_PROG_RQ_DONE, (__u64)bio, now, error);
    bio = bio->bi_next;
  }
  if (b) batch_end(b);
  return 0;
}

/* Bio-based drivers (device-mapper, md, zram) end bios without requests. */
SEC("tp_btf/block_bio_complete")
int BPF_PROG(v2p_bio_done, struct request_queue* q, struct bio* bio) {
  if (filter_devices) {
    bool wanted = false;
    bio_dev(bio, &wanted);
    if (!wanted) return 0;
  }
  struct v2p_complete_batch* b = batch_begin(V2P_BATCH_BIO);
  complete_bio(b, V2P_BATCH_BIO, V2P_PROG_BIO_DONE, (__u64)bio, bpf_ktime_get_ns(), bio->bi_status);
  if (b) batch_end(b);
  return 0;
}

/* Sends this CPU's unfilled batches, the events first. Not attached to anything: user space runs
 * it on each CPU (BPF_PROG_TEST_RUN with BPF_F_TEST_RUN_ON_CPU: from an IPI, or directly on the
 * caller's own CPU) so sparse events do not wait for a batch to fill. A busy batch belongs to a
 * program this flush interrupted; it is left for that program or the next flush. A batch is busy
 * while it is sent, so a program that interrupts this (possible on the caller's CPU, where the
 * flush runs with interrupts on) does not append to a record already copied and then zeroed. */
static __always_inline void flush_idle_batch(__u32 slot) {
  struct v2p_complete_batch* b = batch_begin(slot);
  if (!b) return;
  flush_batch(b, slot, V2P_PROG_FLUSH);
  batch_end(b);
}

SEC("raw_tp")
int v2p_flush(void* ctx) {
  send_idle_events(V2P_PROG_FLUSH);
  if (track_completions) {
    flush_idle_batch(V2P_BATCH_RQ);
    flush_idle_batch(V2P_BATCH_BIO);
  }
  return 0;
}
