#!/bin/bash
# Passive attach's cost on the qemu-storage-daemon path: fio's nbd engine at QD32 against an
# unmodified qemu-storage-daemon (qcow2, O_DIRECT, thread-pool aio), with `v2p attach --pid`
# (uprobes + syscall tracepoints + the block-layer probe) and without, interleaved round by
# round (the order alternates, so drift on a shared machine hits both sides alike). Prints each
# round, the medians, the ratio attached/plain, the BPF run time per guest request of the attach
# programs and of the block probe (kernel.bpf_stats_enabled), and the load average.
#
# Usage: bench/attach/attach_ab.sh [path/to/v2p]   (as root)
# Env: ROUNDS (default 6), RUNTIME seconds per fio run (default 5), RW (randread, the default,
#      or randwrite), SIZE_MIB image size (default 256, fully allocated).
set -euo pipefail

V2P=${1:-build/cli/v2p}
ROUNDS=${ROUNDS:-6}
RUNTIME=${RUNTIME:-5}
RW=${RW:-randread}
SIZE_MIB=${SIZE_MIB:-256}
[ "$(id -u)" -eq 0 ] || { echo "attach_ab.sh: needs root (uprobes)" >&2; exit 1; }
[ -x "$V2P" ] || { echo "attach_ab.sh: no v2p binary at $V2P (pass its path)" >&2; exit 1; }
for t in fio qemu-img qemu-storage-daemon bpftool python3; do
  command -v $t >/dev/null || { echo "attach_ab.sh: needs $t" >&2; exit 1; }
done

WORK=$(mktemp -d /var/tmp/v2p-bench-attach.XXXXXX)
QSD_PID=""
ATTACH_PID=""
STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
  [ -n "$ATTACH_PID" ] && kill -INT "$ATTACH_PID" 2>/dev/null && wait "$ATTACH_PID" 2>/dev/null || true
  [ -n "$QSD_PID" ] && kill -TERM "$QSD_PID" 2>/dev/null && wait "$QSD_PID" 2>/dev/null || true
  sysctl -qw kernel.bpf_stats_enabled="$STATS_WAS" || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

qemu-img create -q -f qcow2 -o preallocation=full "$WORK/vm.qcow2" "${SIZE_MIB}M"
qemu-storage-daemon --blockdev "driver=file,node-name=file0,filename=$WORK/vm.qcow2,cache.direct=on" \
  --blockdev driver=qcow2,node-name=disk0,file=file0 \
  --nbd-server "addr.type=unix,addr.path=$WORK/nbd.sock" \
  --export type=nbd,id=e0,node-name=disk0,name=disk0,writable=on >"$WORK/qsd.log" 2>&1 &
QSD_PID=$!
for _ in $(seq 100); do [ -S "$WORK/nbd.sock" ] && break; sleep 0.05; done
sysctl -qw kernel.bpf_stats_enabled=1

run_fio() {  # prints IOPS and total I/Os
  fio --name=ab --ioengine=nbd --uri="nbd+unix:///disk0?socket=$WORK/nbd.sock" --rw="$RW" \
    --bs=4k --iodepth=32 --size="${SIZE_MIB}M" --time_based --runtime="$RUNTIME" \
    --output-format=json | sed -n '/^{/,$p' | python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]
side = j["read"] if j["read"]["total_ios"] else j["write"]
print("%.0f %d" % (side["iops"], side["total_ios"]))'
}
prog_ns() {  # "run_time_ns run_cnt" summed over programs whose name matches $1
  bpftool -j prog show | python3 -c '
import json, re, sys
t = n = 0
for p in json.load(sys.stdin):
    if re.match(sys.argv[1], p.get("name", "")):
        t += p.get("run_time_ns", 0); n += p.get("run_cnt", 0)
print(t, n)' "$1"
}

plain=() attached=() attach_ns=() probe_ns=() uprobe_ns=() uprobe_runs=()
for r in $(seq "$ROUNDS"); do
  order="plain attached"
  [ $((r % 2)) -eq 0 ] && order="attached plain"
  for side in $order; do
    if [ "$side" = plain ]; then
      read -r iops ios < <(run_fio)
      plain+=("$iops")
    else
      "$V2P" attach --pid "$QSD_PID" >"$WORK/attach.log" 2>&1 &
      ATTACH_PID=$!
      for _ in $(seq 100); do grep -q attached "$WORK/attach.log" && break; sleep 0.05; done
      sleep 0.5
      read -r a0 _ < <(prog_ns '^v2p_(qemu|enter|exit)_')
      read -r u0 un0 < <(prog_ns '^v2p_qemu_p')
      read -r p0 _ < <(prog_ns '^v2p_(bio_|rq_|flush)')
      read -r iops ios < <(run_fio)
      read -r a1 _ < <(prog_ns '^v2p_(qemu|enter|exit)_')
      read -r u1 un1 < <(prog_ns '^v2p_qemu_p')
      read -r p1 _ < <(prog_ns '^v2p_(bio_|rq_|flush)')
      kill -INT "$ATTACH_PID"; wait "$ATTACH_PID" || true; ATTACH_PID=""
      attached+=("$iops")
      attach_ns+=("$(python3 -c "print(f'{($a1 - $a0) / $ios:.0f}')")")
      probe_ns+=("$(python3 -c "print(f'{($p1 - $p0) / $ios:.0f}')")")
      uprobe_ns+=("$(python3 -c "print(f'{($u1 - $u0) / max(1, $un1 - $un0):.0f}')")")
      uprobe_runs+=("$(python3 -c "print(f'{($un1 - $un0) / $ios:.2f}')")")
    fi
    echo "round $r $side: $iops IOPS"
  done
done
python3 - "${plain[*]}" "${attached[*]}" "${attach_ns[*]}" "${probe_ns[*]}" "${uprobe_ns[*]}" "${uprobe_runs[*]}" <<'PY'
import statistics as s, sys
p, a, an, pn, un, ur = ([float(x) for x in arg.split()] for arg in sys.argv[1:7])
print(f"median IOPS: plain {s.median(p):.0f}, attached {s.median(a):.0f}, "
      f"ratio {s.median(a) / s.median(p):.3f}")
print(f"BPF run time per guest request: attach programs {s.median(an):.0f} ns, "
      f"block probe {s.median(pn):.0f} ns (medians; uprobe trap cost not included; the syscall "
      f"tracepoints run for every process's pread/pwrite and are divided by these requests)")
print(f"uprobe programs: {s.median(un):.0f} ns per run, {s.median(ur):.2f} runs per guest request")
PY
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)  RW=$RW ROUNDS=$ROUNDS RUNTIME=$RUNTIME"
