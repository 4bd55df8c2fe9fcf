#!/bin/bash
# Probe overhead under fio: 4 KiB io_uring random reads at QD32 on a file-backed loop device
# (direct I/O to the backing file), alternately without and with `v2p probe` attached to that
# device, RUNS times each in ABBA order so drift hits both sides alike. Prints each run's IOPS and
# the median ratio with/without (target >= 0.97). Then runs pfilter_event_rate if it was built.
# Usage: bench/pfilter/run.sh [path/to/v2p] [path/to/pfilter_event_rate]   (as root)
# Env: RUNS (default 5), RUNTIME seconds per fio run (default 10), SIZE_MIB (default 512),
#      BATCH_KIB (probe --batch-kib, default 64; 0 = wake the consumer for every event),
#      PROBE_ARGS (more `v2p probe` options, e.g. --no-completions).
set -euo pipefail

V2P=${1:-build/cli/v2p}
EVENT_RATE=${2:-build/bench/pfilter/pfilter_event_rate}
RUNS=${RUNS:-5}
RUNTIME=${RUNTIME:-10}
SIZE_MIB=${SIZE_MIB:-512}
BATCH_KIB=${BATCH_KIB:-64}
PROBE_ARGS=${PROBE_ARGS:-}

[ "$(id -u)" -eq 0 ] || { echo "run.sh: needs root (loop devices, eBPF)" >&2; exit 1; }
[ -x "$V2P" ] || { echo "run.sh: no v2p binary at $V2P (pass its path)" >&2; exit 1; }
command -v fio >/dev/null || { echo "run.sh: needs fio" >&2; exit 1; }

WORK=$(mktemp -d /var/tmp/v2p-bench-pfilter.XXXXXX)
LOOP=""
PROBE_PID=""
cleanup() {
  [ -n "$PROBE_PID" ] && kill -TERM "$PROBE_PID" 2>/dev/null && wait "$PROBE_PID" 2>/dev/null || true
  [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# Real blocks (not a sparse file), so every read goes down to the disk below.
dd if=/dev/zero of="$WORK/backing.img" bs=1M count="$SIZE_MIB" oflag=direct status=none
LOOP=$(losetup --find --show --direct-io=on "$WORK/backing.img")
echo "probe: v2p probe --device $LOOP --no-pin --batch-kib $BATCH_KIB $PROBE_ARGS"
echo "device: $LOOP (backing $WORK/backing.img, ${SIZE_MIB} MiB, direct I/O)"

fio_iops() {
  fio --name=randread --filename="$LOOP" --ioengine=io_uring --direct=1 --rw=randread --bs=4k \
      --iodepth=32 --runtime="$RUNTIME" --time_based --numjobs=1 --group_reporting \
      --output-format=json | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))'
}

run_with_probe() {
  "$V2P" probe --device "$LOOP" --stats-interval 0 --no-pin --batch-kib "$BATCH_KIB" $PROBE_ARGS 2> "$WORK/probe.log" &
  PROBE_PID=$!
  # Attached once it prints its first line.
  for _ in $(seq 50); do grep -q attached "$WORK/probe.log" 2>/dev/null && break; sleep 0.1; done
  grep -q attached "$WORK/probe.log" || { cat "$WORK/probe.log" >&2; exit 1; }
  fio_iops
  kill -TERM "$PROBE_PID"; wait "$PROBE_PID" || true; PROBE_PID=""
  tail -1 "$WORK/probe.log" >&2
}

without=(); with=()
for i in $(seq "$RUNS"); do
  if (( i % 2 )); then
    without+=("$(fio_iops)"); with+=("$(run_with_probe)")
  else
    with+=("$(run_with_probe)"); without+=("$(fio_iops)")
  fi
  echo "run $i: without ${without[-1]} IOPS, with probe ${with[-1]} IOPS"
done

# The median of the per-pair ratios as well: pairs ran back to back, so they share the machine's
# load of the moment better than two medians taken across all runs.
ratios=()
for i in "${!with[@]}"; do ratios+=("$(awk -v a="${with[$i]}" -v b="${without[$i]}" 'BEGIN {printf "%.4f", a/b}')"); done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mw=$(median "${without[@]}"); mp=$(median "${with[@]}")
echo "median: without $mw IOPS, with probe $mp IOPS, ratio $(awk -v a="$mp" -v b="$mw" 'BEGIN {printf "%.3f", a/b}') (target >= 0.97)"
echo "median of per-pair ratios: $(median "${ratios[@]}") (pairs: ${ratios[*]})"

# The probe's own cost, which other load on the machine cannot blur: kernel time per program
# call (kernel.bpf_stats_enabled, which itself adds a little) and the consumer's CPU time.
stats_before=$(sysctl -n kernel.bpf_stats_enabled)
sysctl -qw kernel.bpf_stats_enabled=1
"$V2P" probe --device "$LOOP" --stats-interval 0 --no-pin --batch-kib "$BATCH_KIB" $PROBE_ARGS 2> "$WORK/probe.log" &
PROBE_PID=$!
for _ in $(seq 50); do grep -q attached "$WORK/probe.log" 2>/dev/null && break; sleep 0.1; done
iops=$(fio_iops)
read -r utime stime < <(awk '{print $14, $15}' "/proc/$PROBE_PID/stat")
echo "cost at $iops IOPS (bpf_stats on):"
bpftool prog show | awk '/name v2p_/ {for (i = 1; i <= NF; i++) {if ($i == "name") n = $(i+1); if ($i == "run_time_ns") t = $(i+1); if ($i == "run_cnt") c = $(i+1)}; if (c > 0) printf "  %-14s %9d calls %6.0f ns/call\n", n, c, t / c; t = 0; c = 0}'
echo "  consumer (v2p probe): $(( (utime + stime) * 1000 / $(getconf CLK_TCK) )) ms CPU in ${RUNTIME} s"
kill -TERM "$PROBE_PID"; wait "$PROBE_PID" || true; PROBE_PID=""
sysctl -qw kernel.bpf_stats_enabled="$stats_before"

if [ -x "$EVENT_RATE" ]; then
  echo "event delivery:"
  "$EVENT_RATE" 2 5 16
fi
