// SPDX-License-Identifier: GPL-2.0
/* pfilter: block-layer events for v2p. Only tracepoints (tp_btf): kprobes and fentry are not
 * available on the project's kernels. Filters are checked first, so I/O nobody asked about costs
 * a map lookup and nothing else. The logic that can live in user space does (op decoding,
 * error conversion, formatting); see pfilter/events.cpp. */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
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

/* What a queued bio looked like, kept until it completes (the bio's own fields have advanced by
 * then). LRU so that a completion we never see cannot fill the map for good. */
struct inflight {
  __u64 ts_ns;
  __u64 sector;
  __u32 dev;
  __u32 bytes;
  __u32 tgid;
  __u32 tid;
  __u32 cmd_flags;
  __u16 ioprio;
  __u16 pad;
  char comm[V2P_COMM_LEN];
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, __u64); /* struct bio * */
  __type(value, struct inflight);
} v2p_inflight SEC(".maps");

static __always_inline void count(__u32 slot) {
  __u64* v = bpf_map_lookup_elem(&v2p_counters, &slot);
  if (v) *v += 1;
}

static __always_inline bool tgid_wanted(__u32 tgid) {
  return !filter_tgids || bpf_map_lookup_elem(&v2p_tgids, &tgid);
}

static __always_inline bool dev_wanted(__u32 dev) {
  return !filter_devices || bpf_map_lookup_elem(&v2p_devices, &dev);
}

/* A full ring is counted, never silent: user space reports the count as lost events. */
static __always_inline struct v2p_blockio_event* reserve(void) {
  struct v2p_blockio_event* e = bpf_ringbuf_reserve(&v2p_events, sizeof(*e), 0);
  if (!e) {
    count(V2P_COUNTER_RING_FULL);
    return NULL;
  }
  __builtin_memset(e, 0, sizeof(*e));
  return e;
}

static __always_inline void submit(struct v2p_blockio_event* e) {
  __u64 flags = 0;
  if (wakeup_bytes) {
    /* Wake once, as the backlog crosses the threshold (reserved records count as waiting). */
    __u64 waiting = bpf_ringbuf_query(&v2p_events, BPF_RB_AVAIL_DATA);
    __u64 record = sizeof(*e) + 8; /* plus the ring's record header */
    flags = waiting >= wakeup_bytes && waiting < wakeup_bytes + record ? BPF_RB_FORCE_WAKEUP
                                                                       : BPF_RB_NO_WAKEUP;
  }
  bpf_ringbuf_submit(e, flags);
  count(V2P_COUNTER_EVENTS);
}

/* The whole disk a bdev belongs to, as the kernel's disk_devt() computes it. */
static __always_inline __u32 disk_dev(struct block_device* bdev) {
  struct gendisk* disk = BPF_CORE_READ(bdev, bd_disk);
  __u32 major = BPF_CORE_READ(disk, major);
  __u32 minor = BPF_CORE_READ(disk, first_minor);
  return (major << 20) | minor;
}

SEC("tp_btf/block_bio_queue")
int BPF_PROG(v2p_bio_queue, struct bio* bio) {
  __u64 id = bpf_get_current_pid_tgid();
  __u32 tgid = id >> 32;
  if (!tgid_wanted(tgid)) return 0;
  /* Report the device bi_sector is relative to: the partition before its remap, the whole disk
   * after it. A filter naming either the partition or its disk lets the bio through. */
  struct block_device* bdev = BPF_CORE_READ(bio, bi_bdev);
  __u32 dev = BPF_CORE_READ(bdev, bd_dev);
  __u32 part_dev = dev;
  if (bio_remapped_bit < 16 && (BPF_CORE_READ(bio, bi_flags) >> bio_remapped_bit) & 1) {
    dev = disk_dev(bdev);
  }
  if (!dev_wanted(dev) && (dev == part_dev || !dev_wanted(part_dev))) return 0;

  struct inflight in = {};
  in.ts_ns = bpf_ktime_get_ns();
  in.sector = BPF_CORE_READ(bio, bi_iter.bi_sector);
  in.dev = dev;
  in.bytes = BPF_CORE_READ(bio, bi_iter.bi_size);
  in.tgid = tgid;
  in.tid = (__u32)id;
  in.cmd_flags = BPF_CORE_READ(bio, bi_opf);
  in.ioprio = BPF_CORE_READ(bio, bi_ioprio);
  bpf_get_current_comm(in.comm, sizeof(in.comm));
  if (track_completions) {
    __u64 key = (__u64)bio;
    bpf_map_update_elem(&v2p_inflight, &key, &in, BPF_ANY);
  }

  struct v2p_blockio_event* e = reserve();
  if (!e) return 0;
  e->ts_ns = in.ts_ns;
  e->sector = in.sector;
  e->dev = dev;
  e->bytes = in.bytes;
  e->tgid = tgid;
  e->tid = in.tid;
  e->cmd_flags = in.cmd_flags;
  e->ioprio = in.ioprio;
  e->kind = V2P_EVENT_QUEUE;
  __builtin_memcpy(e->comm, in.comm, sizeof(e->comm));
  submit(e);
  return 0;
}

SEC("tp_btf/block_bio_remap")
int BPF_PROG(v2p_bio_remap, struct bio* bio, dev_t old_dev, sector_t old_sector) {
  __u64 id = bpf_get_current_pid_tgid();
  __u32 tgid = id >> 32;
  if (!tgid_wanted(tgid)) return 0;
  /* A partition remap keeps bi_bdev on the partition and makes bi_sector absolute on the disk;
   * a stacking driver (dm) moves the bio to another bdev. Report the device bi_sector is on. */
  struct block_device* bdev = BPF_CORE_READ(bio, bi_bdev);
  __u32 dev = BPF_CORE_READ(bdev, bd_dev);
  if (dev == old_dev) dev = disk_dev(bdev);
  if (!dev_wanted(dev) && !dev_wanted(old_dev)) return 0;

  struct v2p_blockio_event* e = reserve();
  if (!e) return 0;
  e->ts_ns = bpf_ktime_get_ns();
  e->sector = BPF_CORE_READ(bio, bi_iter.bi_sector);
  e->old_sector = old_sector;
  e->dev = dev;
  e->old_dev = old_dev;
  e->bytes = BPF_CORE_READ(bio, bi_iter.bi_size);
  e->tgid = tgid;
  e->tid = (__u32)id;
  e->cmd_flags = BPF_CORE_READ(bio, bi_opf);
  e->ioprio = BPF_CORE_READ(bio, bi_ioprio);
  e->kind = V2P_EVENT_REMAP;
  bpf_get_current_comm(e->comm, sizeof(e->comm));
  submit(e);
  return 0;
}

static __always_inline void complete_bio(struct bio* bio, __u64 now, __u8 status) {
  __u64 key = (__u64)bio;
  struct inflight* in = bpf_map_lookup_elem(&v2p_inflight, &key);
  if (!in) return;
  struct v2p_blockio_event* e = reserve();
  if (e) {
    e->ts_ns = now;
    e->sector = in->sector;
    e->latency_ns = now - in->ts_ns;
    e->dev = in->dev;
    e->bytes = in->bytes;
    e->tgid = in->tgid;
    e->tid = in->tid;
    e->cmd_flags = in->cmd_flags;
    e->ioprio = in->ioprio;
    e->kind = V2P_EVENT_COMPLETE;
    e->error = status;
    __builtin_memcpy(e->comm, in->comm, sizeof(e->comm));
    submit(e);
  }
  bpf_map_delete_elem(&v2p_inflight, &key);
}

/* blk-mq devices (loop, virtio, nvme, scsi) complete requests: block_bio_complete does not fire
 * for their bios on current kernels (measured on 6.18), so walk the request's bios here. The
 * submitter's identity comes from the inflight entry: this runs in whatever context completes. */
#define V2P_MAX_BIOS_PER_REQUEST 64

SEC("tp_btf/block_rq_complete")
int BPF_PROG(v2p_rq_done, struct request* rq, blk_status_t error, unsigned int nr_bytes) {
  __u64 now = bpf_ktime_get_ns();
  struct bio* bio = BPF_CORE_READ(rq, bio);
  __u32 done = 0;
  for (int i = 0; i < V2P_MAX_BIOS_PER_REQUEST && bio; i++) {
    /* A partial completion ends part of the request; later calls report the rest. */
    __u32 size = BPF_CORE_READ(bio, bi_iter.bi_size);
    if (done + size > nr_bytes) break;
    done += size;
    complete_bio(bio, now, error);
    bio = BPF_CORE_READ(bio, bi_next);
  }
  return 0;
}

/* Bio-based drivers (device-mapper, md) end bios without requests. */
SEC("tp_btf/block_bio_complete")
int BPF_PROG(v2p_bio_done, struct request_queue* q, struct bio* bio) {
  complete_bio(bio, bpf_ktime_get_ns(), BPF_CORE_READ(bio, bi_status));
  return 0;
}
