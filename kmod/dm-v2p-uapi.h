/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * dm-v2p: what the target shares with user space through its misc device /dev/v2p-dm.
 *
 * Each record read from the device is one bio the target mapped, in the byte layout of the
 * project's PhysEvent (docs/formats.md, type 3): the correlator joins it like a block_bio_queue
 * event of the eBPF probe. Everything is little endian, fixed width and pointer free.
 */
#ifndef DM_V2P_UAPI_H
#define DM_V2P_UAPI_H

#ifdef __KERNEL__
#include <linux/types.h>
#include <linux/ioctl.h>
#else
#include <linux/types.h>
#include <sys/ioctl.h>
#endif

#define V2P_DM_MISC_NAME "v2p-dm"

/* PhysEvent.kind: the target reports what it maps as queue events. */
#define V2P_DM_KIND_QUEUE 0

/* PhysEvent.op (v2p::IoOp). */
#define V2P_DM_OP_READ 0
#define V2P_DM_OP_WRITE 1
#define V2P_DM_OP_FLUSH 2
#define V2P_DM_OP_DISCARD 3
#define V2P_DM_OP_WRITE_ZEROES 4
#define V2P_DM_OP_OTHER 5

struct v2p_dm_record {
	__u64 ts_ns;		/* ktime_get_ns(): CLOCK_MONOTONIC when the bio was mapped */
	__u64 sector;		/* 512-byte sector on the dm device (dev) */
	__u64 old_sector;	/* sector on the device below (table offset applied) */
	__u64 latency_ns;	/* 0: records are sent at map time */
	__u32 dev;		/* the dm device, major << 20 | minor */
	__u32 old_dev;		/* the device below, major << 20 | minor */
	__u32 bytes;		/* bio size (0 for an empty flush) */
	__u32 tgid;		/* task that mapped the bio (the submitter, see docs) */
	__u32 tid;
	__u32 cmd_flags;	/* bio->bi_opf */
	__u16 ioprio;		/* bio->bi_ioprio as submitted; the tag is bits 3..12 */
	__u8 op;		/* V2P_DM_OP_* */
	__u8 kind;		/* V2P_DM_KIND_QUEUE */
	__s32 error;		/* 0 */
	char comm[16];
};

/* Counters of the ring, cumulative since the module was loaded. */
struct v2p_dm_ring_stats {
	__u64 produced;		/* records written into the ring */
	__u64 dropped;		/* records dropped because the ring was full */
	__u64 delivered;	/* records copied to readers */
	__u64 capacity;		/* records the ring holds now */
};

#define V2P_DM_IOC_MAGIC 0xd2
#define V2P_DM_IOC_RING_STATS _IOR(V2P_DM_IOC_MAGIC, 1, struct v2p_dm_ring_stats)

#endif /* DM_V2P_UAPI_H */
