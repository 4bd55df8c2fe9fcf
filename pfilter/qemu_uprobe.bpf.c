/* Passive attach to an unmodified QEMU or qemu-storage-daemon (docs/attach.md).
 *
 * Two kinds of events, both filtered to the traced processes:
 *  - the entry of QEMU's block-layer request functions (bdrv_co_preadv_part,
 *    bdrv_co_pwritev_part: exported dynamic symbols), once per layer a request passes (the
 *    device's top node, qcow2, then file). Only the entry: these run in coroutines that switch
 *    stacks, so a return probe could see the wrong frame. The qiov is only compared, never
 *    read: the join needs its identity, not its contents.
 *  - the positioned read/write syscalls of the process's I/O threads (thread-pool aio), with
 *    their entry and exit times: the process's bios queued by that thread inside that window are
 *    that syscall's.
 * The programs only copy arguments; every join is done in user space (correlator/uprobe_join). */
#include "vmlinux.h"

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "qemu_uprobe.h"

char LICENSE[] SEC("license") = "GPL";

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 8 << 20); /* resized by the loader */
} v2p_qemu_events SEC(".maps");

/* tgid -> 1: the traced processes (the syscall tracepoints fire for every process). */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 256);
  __type(key, __u32);
  __type(value, __u8);
} v2p_qemu_tgids SEC(".maps");

/* tid -> the syscall it is in (entry time, fd, position, op). */
struct syscall_entry {
  __u64 start_ns;
  __u64 fd;
  __u64 pos;
  __u32 op;
  __u32 rw_sqes; /* io_uring_enter: read/write SQEs it submitted (its return counts fsyncs too) */
  __u32 count_sqes;
  __u32 reserved;
};
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 4096);
  __type(key, __u32);
  __type(value, struct syscall_entry);
} v2p_qemu_syscalls SEC(".maps");

/* Events dropped because the ring buffer was full. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} v2p_qemu_lost SEC(".maps");

static __always_inline int traced(__u32 tgid) {
  return bpf_map_lookup_elem(&v2p_qemu_tgids, &tgid) != 0;
}

static __always_inline void count_lost(void) {
  __u32 zero = 0;
  __u64* n = bpf_map_lookup_elem(&v2p_qemu_lost, &zero);
  if (n) *n += 1;
}

static __always_inline int layer(struct pt_regs* ctx, __u8 op) {
  __u64 id = bpf_get_current_pid_tgid();
  struct v2p_qemu_event* e = bpf_ringbuf_reserve(&v2p_qemu_events, sizeof(*e), 0);
  if (!e) {
    count_lost();
    return 0;
  }
  __builtin_memset(e, 0, sizeof(*e));
  e->ts_ns = bpf_ktime_get_ns();
  e->kind = V2P_QEMU_LAYER;
  e->op = op;
  e->tgid = id >> 32;
  e->tid = (__u32)id;
  /* BdrvChild starts with its BlockDriverState *bs. */
  __u64 child = PT_REGS_PARM1(ctx);
  bpf_probe_read_user(&e->node, sizeof(e->node), (void*)child);
  e->offset = PT_REGS_PARM2(ctx);
  e->bytes = (__s64)PT_REGS_PARM3(ctx);
  e->qiov = PT_REGS_PARM4(ctx);
  e->qiov_offset = PT_REGS_PARM5(ctx);
#if defined(__TARGET_ARCH_x86)
  e->flags = (__u32)ctx->r9;
#endif
  bpf_ringbuf_submit(e, 0);
  return 0;
}

SEC("uprobe")
int v2p_qemu_preadv(struct pt_regs* ctx) {
  return layer(ctx, V2P_QEMU_READ);
}

SEC("uprobe")
int v2p_qemu_pwritev(struct pt_regs* ctx) {
  return layer(ctx, V2P_QEMU_WRITE);
}

static __always_inline int syscall_enter(struct trace_event_raw_sys_enter* ctx, __u32 op,
                                         int pos_arg) {
  __u64 id = bpf_get_current_pid_tgid();
  if (!traced(id >> 32)) return 0;
  /* pread64/pwrite64: (fd, buf, count, pos); p{read,write}v{,2}: (fd, vec, vlen, pos_l, ...);
   * fallocate: (fd, mode, offset, len); fdatasync/fsync: (fd). */
  __u64 pos = pos_arg == 2 ? ctx->args[2] : pos_arg == 3 ? ctx->args[3] : 0;
  if ((long)pos < 0) return 0; /* preadv2 with pos -1: the file position, not used */
  struct syscall_entry s = {.start_ns = bpf_ktime_get_ns(),
                            .fd = ctx->args[0],
                            .pos = pos,
                            .op = op,
                            .count_sqes = pos_arg == -2};
  __u32 tid = (__u32)id;
  bpf_map_update_elem(&v2p_qemu_syscalls, &tid, &s, BPF_ANY);
  return 0;
}

static __always_inline int syscall_exit(struct trace_event_raw_sys_exit* ctx) {
  __u64 id = bpf_get_current_pid_tgid();
  __u32 tid = (__u32)id;
  struct syscall_entry* s = bpf_map_lookup_elem(&v2p_qemu_syscalls, &tid);
  if (!s) return 0;
  struct v2p_qemu_event* e = bpf_ringbuf_reserve(&v2p_qemu_events, sizeof(*e), 0);
  if (!e) {
    count_lost();
    bpf_map_delete_elem(&v2p_qemu_syscalls, &tid);
    return 0;
  }
  __builtin_memset(e, 0, sizeof(*e));
  e->ts_ns = bpf_ktime_get_ns();
  e->start_ns = s->start_ns;
  e->node = s->fd;
  e->offset = s->pos;
  e->bytes = s->count_sqes && ctx->ret >= 0 ? s->rw_sqes : ctx->ret;
  e->kind = V2P_QEMU_FILEIO;
  e->op = (__u8)s->op;
  e->tgid = id >> 32;
  e->tid = tid;
  bpf_map_delete_elem(&v2p_qemu_syscalls, &tid);
  bpf_ringbuf_submit(e, 0);
  return 0;
}

#define V2P_SYSCALL(name, op, pos_arg)                          \
  SEC("tracepoint/syscalls/sys_enter_" #name)                   \
  int v2p_enter_##name(struct trace_event_raw_sys_enter* ctx) { \
    return syscall_enter(ctx, op, pos_arg);                     \
  }                                                             \
  SEC("tracepoint/syscalls/sys_exit_" #name)                    \
  int v2p_exit_##name(struct trace_event_raw_sys_exit* ctx) {   \
    return syscall_exit(ctx);                                   \
  }

V2P_SYSCALL(pread64, V2P_QEMU_READ, 3)
V2P_SYSCALL(preadv, V2P_QEMU_READ, 3)
V2P_SYSCALL(preadv2, V2P_QEMU_READ, 3)
V2P_SYSCALL(pwrite64, V2P_QEMU_WRITE, 3)
V2P_SYSCALL(pwritev, V2P_QEMU_WRITE, 3)
V2P_SYSCALL(pwritev2, V2P_QEMU_WRITE, 3)
/* No guest data, but their bios are the vdisk's: allocation (qcow2 zero clusters) and flushes. */
V2P_SYSCALL(fallocate, V2P_QEMU_OTHER, 2)
V2P_SYSCALL(fdatasync, V2P_QEMU_OTHER, -1)
V2P_SYSCALL(fsync, V2P_QEMU_OTHER, -1)
/* aio=io_uring / aio=native: the bios of the requests submitted are queued inside these. */
V2P_SYSCALL(io_uring_enter, V2P_QEMU_SUBMIT, -2)
V2P_SYSCALL(io_submit, V2P_QEMU_SUBMIT, -1)

/* Each SQE io_uring_enter submits, in order, on the submitting task: only reads and writes
 * carry a queued file request (QEMU also submits IORING_OP_FSYNC for flushes). */
SEC("tracepoint/io_uring/io_uring_submit_req")
int v2p_qemu_sqe(struct trace_event_raw_io_uring_submit_req* ctx) {
  __u32 tid = (__u32)bpf_get_current_pid_tgid();
  struct syscall_entry* s = bpf_map_lookup_elem(&v2p_qemu_syscalls, &tid);
  if (!s || !s->count_sqes) return 0;
  const __u8 op = ctx->opcode;
  /* IORING_OP_READV 1, WRITEV 2, READ_FIXED 4, WRITE_FIXED 5, READ 22, WRITE 23 */
  if (op == 1 || op == 2 || op == 4 || op == 5 || op == 22 || op == 23) s->rw_sqes += 1;
  return 0;
}
