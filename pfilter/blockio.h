/* The event the blockio eBPF programs send to user space, and the names both sides agree on.
 * Shared by blockio.bpf.c (C, types from vmlinux.h) and the C++ loader (types from
 * <linux/types.h>). Fixed-width and pointer-free; byte for byte the layout of v2p::PhysEvent
 * (include/v2p/records.hpp), which pfilter/probe.cpp checks with static_asserts. */
#ifndef V2P_PFILTER_BLOCKIO_H
#define V2P_PFILTER_BLOCKIO_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define V2P_COMM_LEN 16

/* Values of v2p_blockio_event.kind (== v2p::PhysEventKind). */
#define V2P_EVENT_QUEUE 0
#define V2P_EVENT_REMAP 1
#define V2P_EVENT_COMPLETE 2

/* The per-CPU counter array v2p_counters: a slot per (counter, program). Each program counts
 * into its own slots, because programs interrupt each other on a CPU (a completion in an
 * interrupt, the flush program in an IPI) and a plain increment of a shared slot could then lose
 * an update; a program never interrupts itself (the kernel does not nest it), so no atomic
 * operation is needed. User space sums a counter's slots. */
#define V2P_COUNTER_RING_FULL 0  /* events dropped because the ring buffer was full */
#define V2P_COUNTER_EVENTS 1     /* events committed to the ring buffer */
#define V2P_COUNTER_SUPPRESSED 2 /* bios the map already knew: counted, not sent */
#define V2P_COUNTER_STATS_FULL 3 /* I/Os whose device or vdisk found no counter entry */
#define V2P_COUNTER_UNTAGGED 4   /* untagged data bios counted, not sent (also in SUPPRESSED) */
#define V2P_COUNTERS 5
#define V2P_PROG_QUEUE 0
#define V2P_PROG_REMAP 1
#define V2P_PROG_RQ_DONE 2
#define V2P_PROG_BIO_DONE 3
#define V2P_PROG_FLUSH 4
#define V2P_PROGS 5
#define V2P_COUNTER_SLOT(counter, prog) ((counter)*V2P_PROGS + (prog))
#define V2P_COUNTER_SLOTS (V2P_COUNTERS * V2P_PROGS)

/* Filter set members checked inline (no map lookup) before the hash map: see blockio.bpf.c. */
#define V2P_SET_INLINE 8

struct v2p_blockio_event {
  __u64 ts_ns;      /* bpf_ktime_get_ns() == CLOCK_MONOTONIC */
  __u64 sector;     /* 512-byte sector on dev */
  __u64 old_sector; /* remap: sector on old_dev */
  /* queue: the bio's address, which its completion record names (user space joins the two and
   * reports 0 here); complete (in user space): queue → completion */
  __u64 latency_ns;
  __u32 dev;     /* kernel dev_t (major << 20 | minor) */
  __u32 old_dev; /* remap: device the bio came from */
  __u32 bytes;
  __u32 tgid;
  __u32 tid;
  __u32 cmd_flags; /* bio->bi_opf: REQ_OP_* in the low 8 bits, REQ_* flags above */
  __u16 ioprio;    /* bio->bi_ioprio, carries the vfilter's slot in its hint bits */
  __u8 op;         /* filled in by user space from cmd_flags */
  __u8 kind;       /* V2P_EVENT_* */
  __s32 error;     /* complete: raw blk_status_t from BPF; -errno once user space converts */
  char comm[V2P_COMM_LEN];
};

/* What the kernel sends when bios complete: only their addresses, times and statuses. User
 * space pairs each address with the queue event that carried it (in latency_ns) and makes the
 * complete PhysEvent from both, so the kernel keeps no per-bio state. Completions are batched
 * per CPU (V2P_COMPLETE_BATCH to a ring record, see blockio.bpf.c): one ring reservation per
 * batch instead of one per request. Its size (280 bytes) tells it apart from a
 * v2p_blockio_event (80). */
#define V2P_COMPLETE_BATCH 16
struct v2p_complete_record {
  __u32 count; /* entries [0..count) */
  __u32 reserved;
  __u8 status[V2P_COMPLETE_BATCH]; /* raw blk_status_t */
  __u64 ts_ns[V2P_COMPLETE_BATCH];
  __u64 bios[V2P_COMPLETE_BATCH];
};

/* Queue and remap events are batched per CPU too (one batch per CPU, shared by both programs so
 * a CPU's events keep their order): V2P_EVENT_BATCH events to a ring record, one copy into the
 * ring instead of a reservation and a commit per event. The batch is sent when it fills, before
 * a completion batch of the same CPU is sent (so a bio's queue event precedes its completion on
 * one CPU), and by the flush program. Across CPUs a completion can reach user space before its
 * queue event, so each CPU publishes in v2p_unsent_since the time of the oldest event its batch
 * holds, and user space joins a completion only once no batch holds an event older than it
 * (pfilter/probe.cpp). Its size (1 288 bytes) tells the record apart from the others. */
#define V2P_EVENT_BATCH 16
struct v2p_event_record {
  __u32 count; /* events [0..count) */
  __u32 reserved;
  struct v2p_blockio_event events[V2P_EVENT_BATCH];
};
struct v2p_event_batch {
  __u32 busy; /* as in v2p_complete_batch */
  __u32 reserved;
  struct v2p_event_record record;
};

/* A CPU's batch in the making, one per completion program (so a program never finds its own
 * batch half-written: the kernel does not nest a program on one CPU). `busy` is set by whichever
 * of its two writers is using it: the completion program, or the flush program that user space
 * runs on each CPU to send batches that sparse I/O leaves unfilled. Each can interrupt the other
 * on the same CPU (the flush from an IPI; a completion from an interrupt while the flush runs on
 * the consumer's own CPU, in process context); the one that finds the batch busy leaves it
 * alone: the flush skips it, a completion goes out in a record of its own. */
#define V2P_BATCH_RQ 0  /* v2p_rq_done */
#define V2P_BATCH_BIO 1 /* v2p_bio_done */
#define V2P_BATCH_SLOTS 2

/* v2p_unsent_since: per CPU, the time of the oldest entry waiting in each of its batches (0:
 * empty). The event batch's tells user space which completions it may join; all tell it which
 * CPUs need a flush. */
#define V2P_SINCE_EVENTS 0
#define V2P_SINCE_COMPLETIONS(batch_slot) (1 + (batch_slot))
#define V2P_SINCES_PER_CPU 4 /* 3 used; 32 bytes per CPU */
#define V2P_SINCE_SLOT(cpu, which) ((cpu)*V2P_SINCES_PER_CPU + (which))
struct v2p_complete_batch {
  __u32 busy;
  __u32 reserved;
  struct v2p_complete_record record;
};

/* ---- Suppression of repeats (see docs/pfilter.md, "What the probe sends") ---- */

/* The slot table (v2p_slot_table, BPF_F_MMAPABLE array): V2P_SLOT_ROWS rows of V2P_SLOTS_PER_ROW
 * entries, one row per export process (v2p_slot_rows maps its tgid to its row). The export writes
 * a slot's context with plain stores into its mapping before it submits the SQE carrying the
 * slot, and the slot stays its request's until the request completes, so the bio's queue program
 * (after the submission) reads a stable entry. generation 0: unset, never suppressed. */
#define V2P_SLOTS_PER_ROW 1024 /* the ioprio hint's 10 bits */
#define V2P_SLOT_ROWS 32
struct v2p_slot_context {
  __u32 generation; /* bumped by each write; 0 = unset */
  __u32 vm;
  __u32 vdisk;
  __u32 reserved;
  __u64 voffset; /* the request's byte offset in the vdisk */
};

/* Op classes of the counters and of the suppression key. */
#define V2P_OP_READ 0
#define V2P_OP_WRITE 1 /* also write zeroes */
#define V2P_OP_DISCARD 2
#define V2P_OP_OTHER 3 /* flush and the rest */
#define V2P_OP_CLASSES 4

/* v2p_seen_at: per physical range, the owner of its last reported bio. v2p_seen_from (tagged
 * bios with a known context only): per virtual range, the physical range of its last reported bio.
 * A bio is suppressed when both agree with it: then the map's forward and reverse entries already
 * say what it says. Both are arrays of 8-way sets, one cache line each, shared by all CPUs, so
 * every CPU knows what any CPU reported: a lookup is one inlined array access (one cache line)
 * and eight compares, an update one store, no lock and no allocation (docs/pfilter.md).
 *
 * An entry is one 64-bit word, so two CPUs writing it at once cannot tear it: the upper half
 * names the range (the bits of the range's 64-bit hash the set index does not use), the lower
 * half is what was reported for it, a hash of the owner (v2p_seen_at) or of the physical range
 * (v2p_seen_from) mixed with the discard epoch, whose low V2P_SEEN_OP_BITS bits are replaced by
 * the op classes reported (1 << V2P_OP_READ / V2P_OP_WRITE). 0 is a free way. A bio is
 * suppressed only if its range's name (32 bits) and its owner's half (30 bits) both match: a
 * wrong suppression needs a 62-bit collision on top of the set index. */
#define V2P_SEEN_WAYS 8
#define V2P_SEEN_OP_BITS 2
struct v2p_seen_set {
  __u64 way[V2P_SEEN_WAYS];
};

/* Counters, readable with `bpftool map dump` (the contract in docs/pfilter.md). Both maps are
 * per-CPU arrays used as small open-addressed tables (the key is stored in the value, `used`
 * marks a taken entry): an inlined array access instead of a hash lookup per I/O. A CPU places
 * a key at the first free or matching entry among V2P_STATS_PROBES from the key's hash, so one
 * key can sit at different indexes on different CPUs; readers sum by key. A key that finds no
 * entry is counted in V2P_COUNTER_STATS_FULL (cardinality stays bounded). Each CPU's copy is
 * written only by one program, which does not nest on its CPU: no atomics. */
#define V2P_LATENCY_BUCKETS 32 /* bucket b: latency in [2^b, 2^(b+1)) µs; bucket 0 also < 1 µs */
#define V2P_DEVICE_STATS_ENTRIES 2048 /* devices x op classes, per CPU */
/* The first entries belong to the members of the inline device filter set, by position
 * (V2P_OP_CLASSES each); the upper half is placed by hash. */
#define V2P_DEVICE_STATS_HASHED (V2P_DEVICE_STATS_ENTRIES / 2)
#define V2P_VDISK_STATS_ENTRIES 4096 /* vdisks x op classes, per CPU */
#define V2P_STATS_PROBES 4
struct v2p_device_stats { /* per CPU; counted when a request completes */
  __u32 dev;              /* kernel dev_t of the request's disk */
  __u32 op_class;
  __u32 used;
  __u32 reserved;
  __u64 ios;
  __u64 bytes;
  __u64 latency_us_log2[V2P_LATENCY_BUCKETS];
};
struct v2p_vdisk_stats { /* per CPU; counted when a bio with a known slot context is queued */
  __u32 vm;
  __u32 vdisk;
  __u32 op_class;
  __u32 used;
  __u64 ios;
  __u64 bytes;
};

#endif /* V2P_PFILTER_BLOCKIO_H */
