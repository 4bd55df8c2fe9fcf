/* Events of the passive-attach programs (qemu_uprobe.bpf.c) for user space (qemu_attach.cpp).
 * Fixed-width and pointer-free: addresses in the traced process travel as __u64 and are only
 * compared or read back through /proc/PID/mem, never dereferenced here. */
#ifndef V2P_PFILTER_QEMU_UPROBE_H
#define V2P_PFILTER_QEMU_UPROBE_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* v2p_qemu_event.kind */
#define V2P_QEMU_LAYER 1  /* entry of bdrv_co_preadv_part / bdrv_co_pwritev_part */
#define V2P_QEMU_FILEIO 2 /* a positioned read/write syscall of the traced process, at its exit */

/* v2p_qemu_event.op */
#define V2P_QEMU_READ 0
#define V2P_QEMU_WRITE 1
#define V2P_QEMU_OTHER 2  /* fileio: fallocate, fdatasync, fsync */
#define V2P_QEMU_SUBMIT 3 /* fileio: io_uring_enter, io_submit (aio=io_uring, aio=native) */

struct v2p_qemu_event {
  __u64 ts_ns;       /* layer: entry; fileio: syscall exit (CLOCK_MONOTONIC) */
  __u64 start_ns;    /* fileio: syscall entry */
  __u64 node;        /* layer: BlockDriverState* (BdrvChild->bs); fileio: fd */
  __u64 offset;      /* layer: byte offset in the node; fileio: file position */
  __s64 bytes;       /* layer: request bytes; fileio: the syscall's return value */
  __u64 qiov;        /* layer: QEMUIOVector* (0 for write-zeroes) */
  __u64 qiov_offset; /* layer: where in qiov the request's data starts */
  __u32 tgid;
  __u32 tid;
  __u32 flags; /* layer: BdrvRequestFlags */
  __u32 reserved0;
  __u8 kind; /* V2P_QEMU_LAYER / V2P_QEMU_FILEIO */
  __u8 op;   /* V2P_QEMU_READ / V2P_QEMU_WRITE */
  __u8 reserved[6];
};

#endif /* V2P_PFILTER_QEMU_UPROBE_H */
