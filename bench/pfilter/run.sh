#!/bin/bash
# For the fio ratio alone, prefer fio_toggle.sh (one long fio run with the probe attached and
# detached in turns: a far smaller spread than the separate runs here).
#
# Probe overhead under fio: 4 KiB io_uring random reads at QD32 on a file-backed loop device
# (direct I/O to the backing file), alternately without and with `v2p probe` attached to that
# device, RUNS times each in ABBA order so drift hits both sides alike. Done for each probe
# configuration in CONFIGS:
#   default  `v2p probe`'s default: events only for what the map does not know, the rest counted
#   mapping  queue + remap events for every bio (--every-bio --no-completions)
#   full     queue + remap + completion events for every bio (--every-bio: latency per bio)
#   idle     the full programs attached with a device filter nothing matches: every call is a
#            rejection, no event is sent (what attaching costs before any event)
# Prints each run's IOPS and the median ratio with/without (target >= 0.97), then the probe's own
# cost per program call (kernel.bpf_stats_enabled) and per rejected call. Then runs
# pfilter_event_rate if it was built.
# Usage: bench/pfilter/run.sh [path/to/v2p] [path/to/pfilter_event_rate]   (as root)
# Env: RUNS (default 5; 0: only the bpf_stats costs), RUNTIME seconds per fio run (default 10), SIZE_MIB (default 512),
#      BATCH_KIB (probe --batch-kib, default 64; 0 = wake the consumer for every event),
#      CONFIGS (default "default full"), PROBE_ARGS (more `v2p probe` options for every config),
#      EVENT_RATE_ARGS (default "2 5 16 $BATCH_KIB 1"; "skip" to skip it),
#      EVENT_RATE_LOADS (default "zram loop partition writeback": pfilter_event_rate runs once per load, its
#      consumer pinned to the last CPU; see event_rate.cpp).
set -euo pipefail

V2P=${1:-build/cli/v2p}
EVENT_RATE=${2:-build/bench/pfilter/pfilter_event_rate}
RUNS=${RUNS:-5}
RUNTIME=${RUNTIME:-10}
SIZE_MIB=${SIZE_MIB:-512}
BATCH_KIB=${BATCH_KIB:-64}
CONFIGS=${CONFIGS:-default full}
PROBE_ARGS=${PROBE_ARGS:-}
EVENT_RATE_ARGS=${EVENT_RATE_ARGS:-2 5 16 $BATCH_KIB 1}
EVENT_RATE_LOADS=${EVENT_RATE_LOADS:-zram loop partition writeback}

[ "$(id -u)" -eq 0 ] || { echo "run.sh: needs root (loop devices, eBPF)" >&2; exit 1; }
[ -x "$V2P" ] || { echo "run.sh: no v2p binary at $V2P (pass its path)" >&2; exit 1; }
command -v fio >/dev/null || { echo "run.sh: needs fio" >&2; exit 1; }

WORK=$(mktemp -d /var/tmp/v2p-bench-pfilter.XXXXXX)
LOOP=""
PROBE_PID=""
STATS_BEFORE=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
  [ -n "$PROBE_PID" ] && kill -TERM "$PROBE_PID" 2>/dev/null && wait "$PROBE_PID" 2>/dev/null || true
  [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null || true
  sysctl -qw kernel.bpf_stats_enabled="$STATS_BEFORE" || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# Real blocks (not a sparse file), so every read goes down to the disk below.
dd if=/dev/zero of="$WORK/backing.img" bs=1M count="$SIZE_MIB" oflag=direct status=none
LOOP=$(losetup --find --show --direct-io=on "$WORK/backing.img")
echo "device: $LOOP (backing $WORK/backing.img, ${SIZE_MIB} MiB, direct I/O)"

fio_iops() {
  fio --name=randread --filename="$LOOP" --ioengine=io_uring --direct=1 --rw=randread --bs=4k \
      --iodepth=32 --runtime="$RUNTIME" --time_based --numjobs=1 --group_reporting \
      --output-format=json | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))'
}

# Other sessions load and unload programs meanwhile, which can make bpftool fail mid-listing.
prog_ids() { { bpftool prog show 2>/dev/null || true; } | awk -F: '/^[0-9]+:/ {printf "%s ", $1}'; }

# Starts `v2p probe` on $1 with the config's options; sets PROBE_PID and MINE (the ids of the
# programs it loaded, so other probes running on the machine are not counted).
start_probe() {
  local before
  before=" $(prog_ids)"
  # Its stdout is not ours: inside $(…) it would otherwise hold the pipe open if we failed.
  "$V2P" probe --device "$1" --stats-interval 0 --no-pin --batch-kib "$BATCH_KIB" $ARGS \
    > /dev/null 2> "$WORK/probe.log" &
  PROBE_PID=$!
  # Attached once it prints its first line (loading can take seconds on a busy machine).
  for _ in $(seq 300); do grep -q attached "$WORK/probe.log" 2>/dev/null && break; sleep 0.1; done
  if ! grep -q attached "$WORK/probe.log"; then
    echo "run.sh: v2p probe did not attach within 30 s:" >&2
    cat "$WORK/probe.log" >&2
    stop_probe
    exit 1
  fi
  MINE=""
  for id in $(prog_ids); do
    case "$before" in *" $id "*) ;; *) MINE+="$id ";; esac
  done
}

stop_probe() {
  [ -n "$PROBE_PID" ] || return 0
  kill -TERM "$PROBE_PID" 2>/dev/null || true; wait "$PROBE_PID" || true; PROBE_PID=""
}

# Runs in a $(…) subshell: stop the probe whatever fio does (a failed run prints 0).
run_with_probe() {
  trap stop_probe EXIT
  start_probe "$TARGET"
  local iops
  iops=$(fio_iops) || { echo "run.sh: fio failed" >&2; iops=0; }
  stop_probe
  tail -1 "$WORK/probe.log" >&2
  echo "$iops"
}

# ns per call of the programs in MINE, and their total kernel time per fio I/O ($1: IOPS of a
# RUNTIME-second run; the programs were loaded just before it, so all their calls are its own).
program_costs() {
  local total=0 t
  for id in $MINE; do
    { bpftool prog show id "$id" 2>/dev/null || true; } | awk '/name v2p_/ {for (i = 1; i <= NF; i++) {if ($i == "name") n = $(i+1); if ($i == "run_time_ns") t = $(i+1); if ($i == "run_cnt") c = $(i+1)}; if (c > 0) printf "  %-14s %9d calls %6.0f ns/call\n", n, c, t / c}'
    t=$({ bpftool prog show id "$id" 2>/dev/null || true; } | awk '/run_time_ns/ {for (i = 1; i <= NF; i++) if ($i == "run_time_ns") print $(i+1)}')
    total=$((total + ${t:-0}))
  done
  awk -v t="$total" -v iops="$1" -v s="$RUNTIME" 'BEGIN {if (iops > 0) printf "  all programs: %.0f ns per fio I/O\n", t / (iops * s)}'
}

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

for config in $CONFIGS; do
  case "$config" in
    default) ARGS="$PROBE_ARGS"; TARGET=$LOOP ;;
    mapping) ARGS="--every-bio --no-completions $PROBE_ARGS"; TARGET=$LOOP ;;
    full) ARGS="--every-bio $PROBE_ARGS"; TARGET=$LOOP ;;
    idle) ARGS="$PROBE_ARGS"; TARGET=7:1048575 ;;
    *) echo "run.sh: unknown config $config (default, mapping, full, idle)" >&2; exit 1 ;;
  esac
  echo "== $config: v2p probe --device $TARGET --no-pin --batch-kib $BATCH_KIB $ARGS"
  without=(); with=()
  for i in $(seq "$RUNS"); do
    if (( i % 2 )); then
      without+=("$(fio_iops)"); with+=("$(run_with_probe)")
    else
      with+=("$(run_with_probe)"); without+=("$(fio_iops)")
    fi
    echo "run $i: without ${without[-1]} IOPS, with probe ${with[-1]} IOPS"
  done

  if (( RUNS > 0 )); then
    # The median of the per-pair ratios as well: pairs ran back to back, so they share the machine's
    # load of the moment better than two medians taken across all runs.
    ratios=()
    for i in "${!with[@]}"; do ratios+=("$(awk -v a="${with[$i]}" -v b="${without[$i]}" 'BEGIN {printf "%.4f", a/b}')"); done
    mw=$(median "${without[@]}"); mp=$(median "${with[@]}")
    echo "median: without $mw IOPS, with probe $mp IOPS, ratio $(awk -v a="$mp" -v b="$mw" 'BEGIN {printf "%.3f", a/b}') (target >= 0.97)"
    echo "median of per-pair ratios: $(median "${ratios[@]}") (pairs: ${ratios[*]})"
  fi

  # The probe's own cost, which other load on the machine cannot blur as much: kernel time per
  # program call (kernel.bpf_stats_enabled, which itself adds some tens of ns) and the consumer's
  # CPU time. Then the same with a filter nothing matches: what rejecting a bio costs.
  sysctl -qw kernel.bpf_stats_enabled=1
  start_probe "$LOOP"
  # The consumer's CPU time during the run only (loading the programs and reading the kernel's
  # BTF at start cost tens of ms of their own).
  cpu0=$(awk '{print $14 + $15}' "/proc/$PROBE_PID/stat")
  iops=$(fio_iops)
  cpu1=$(awk '{print $14 + $15}' "/proc/$PROBE_PID/stat")
  echo "cost at $iops IOPS (bpf_stats on; each I/O is one bio on $LOOP and one on the disk below):"
  program_costs "$iops"
  echo "  consumer (v2p probe): $(( (cpu1 - cpu0) * 1000 / $(getconf CLK_TCK) )) ms CPU in ${RUNTIME} s"
  stop_probe
  start_probe 7:1048575  # no such device: every call is a rejection
  iops=$(fio_iops)
  echo "rejections only, at $iops IOPS:"
  program_costs "$iops"
  stop_probe
  sysctl -qw kernel.bpf_stats_enabled="$STATS_BEFORE"
done

if [ -x "$EVENT_RATE" ] && [ "$EVENT_RATE_ARGS" != skip ]; then
  consumer_cpu=$(( $(nproc) - 1 ))
  for load in $EVENT_RATE_LOADS; do
    # Reads (zram, loop) or 512-byte blocks (writeback) per system call: each load's default.
    case "$load" in zram) batch=64 ;; loop|partition) batch=256 ;; writeback) batch=2048 ;; *) batch=64 ;; esac
    echo "== event delivery: $EVENT_RATE $EVENT_RATE_ARGS $load $batch $consumer_cpu"
    # shellcheck disable=SC2086
    "$EVENT_RATE" $EVENT_RATE_ARGS "$load" "$batch" "$consumer_cpu"
  done
fi
