#!/bin/bash
# Probe overhead under one long fio run: 4 KiB io_uring random reads (or writes, RW=randwrite) at
# QD32 on a file-backed loop device (direct I/O to the backing file), while `v2p probe` is
# attached and detached in turns. Also prints, per config, the events the probe sent per fio I/O
# and their rate in MB/s (80 bytes an event: the size of a queue event; a completion costs less).
#
# Why not run.sh's separate fio runs: on this shared VM the IOPS of two back-to-back fio runs
# differ by ±5 %, more than the effect. Here fio never restarts; its IOPS log (one value per
# LOG_MS) is cut into windows "without" / "with <config>" by the times the probe attached and
# detached, and each "with" window is compared with the mean of the "without" windows just
# before and after it, which cancels slow drift. Tens of pairs a minute give a median whose
# bootstrap 95 % interval is printed with it.
#
# Usage: bench/pfilter/fio_toggle.sh [path/to/v2p]   (as root)
# Env: CYCLES (default 30; each cycle is one window per config, each between two "without"
#      windows), WINDOW_S seconds per window (default 2), SETTLE_MS skipped after each
#      attach/detach (default 300), LOG_MS fio's IOPS averaging period (default 250),
#      CONFIGS (default "default full"): default (`v2p probe`: repeats counted in the kernel),
#      full (--every-bio: an event per bio and per completion), mapping (--every-bio
#      --no-completions), idle (a device nobody uses: the cost of the rejections); BACKING (disk:
#      a file on /var/tmp, the default; ram: a file on /dev/shm, the fast CPU-bound device),
#      SIZE_MIB (default 512; the working set: keep it within the probe's --seen-ranges × 4 KiB),
#      RW (randread, the default, or randwrite),
#      BATCH_KIB (probe --batch-kib, default 64), PROBE_ARGS (more `v2p probe` options),
#      V2P_B: a second v2p binary (another build) whose configs are named with "@b", e.g.
#      CONFIGS="full full@b": both builds compared in the same fio run.
set -euo pipefail

V2P=${1:-build/cli/v2p}
CYCLES=${CYCLES:-30}
WINDOW_S=${WINDOW_S:-2}
SETTLE_MS=${SETTLE_MS:-300}
LOG_MS=${LOG_MS:-250}
CONFIGS=${CONFIGS:-default full}
RW=${RW:-randread}
BACKING=${BACKING:-disk}
SIZE_MIB=${SIZE_MIB:-512}
BATCH_KIB=${BATCH_KIB:-64}
PROBE_ARGS=${PROBE_ARGS:-}
V2P_B=${V2P_B:-}

[ "$(id -u)" -eq 0 ] || { echo "fio_toggle.sh: needs root (loop devices, eBPF)" >&2; exit 1; }
[ -x "$V2P" ] || { echo "fio_toggle.sh: no v2p binary at $V2P (pass its path)" >&2; exit 1; }
command -v fio >/dev/null || { echo "fio_toggle.sh: needs fio" >&2; exit 1; }
case "$BACKING" in
  disk) WORK=$(mktemp -d /var/tmp/v2p-bench-toggle.XXXXXX) ;;
  ram) WORK=$(mktemp -d /dev/shm/v2p-bench-toggle.XXXXXX) ;;
  *) echo "fio_toggle.sh: BACKING is disk or ram" >&2; exit 1 ;;
esac

LOOP=""
PROBE_PID=""
FIO_PID=""
cleanup() {
  [ -n "$PROBE_PID" ] && kill -TERM "$PROBE_PID" 2>/dev/null && wait "$PROBE_PID" 2>/dev/null || true
  [ -n "$FIO_PID" ] && kill -INT "$FIO_PID" 2>/dev/null && wait "$FIO_PID" 2>/dev/null || true
  [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

dd if=/dev/zero of="$WORK/backing.img" bs=1M count="$SIZE_MIB" oflag=direct status=none
LOOP=$(losetup --find --show --direct-io=on "$WORK/backing.img")
echo "device: $LOOP (backing $BACKING: $WORK/backing.img, ${SIZE_MIB} MiB, direct I/O)"

now_ms() { date +%s%3N; }
WINDOWS="$WORK/windows"
: > "$WINDOWS"
PROBE_RUNS="$WORK/probe_runs"
: > "$PROBE_RUNS"
# One window of $1 ("without" or a config name): wait WINDOW_S, then note its steady part.
window() {
  local start=$(( $(now_ms) + SETTLE_MS ))
  sleep "$WINDOW_S"
  echo "$1 $start $(now_ms)" >> "$WINDOWS"
}

probe_args() {
  case "${1%@b}" in
    default) echo "--device $LOOP $PROBE_ARGS" ;;
    mapping) echo "--device $LOOP --every-bio --no-completions $PROBE_ARGS" ;;
    full) echo "--device $LOOP --every-bio $PROBE_ARGS" ;;
    idle) echo "--device 7:1048575 $PROBE_ARGS" ;;  # no such device: every call is a rejection
    *) echo "fio_toggle.sh: unknown config $1 (default, full, mapping, idle)" >&2; exit 1 ;;
  esac
}

start_probe() {
  local bin=$V2P
  if [ "${1%@b}" != "$1" ]; then
    [ -x "$V2P_B" ] || { echo "fio_toggle.sh: config $1 needs V2P_B, a v2p binary" >&2; exit 1; }
    bin=$V2P_B
  fi
  # shellcheck disable=SC2046
  "$bin" probe $(probe_args "$1") --stats-interval 0 --no-pin --batch-kib "$BATCH_KIB" \
    > /dev/null 2> "$WORK/probe.log" &
  PROBE_PID=$!
  for _ in $(seq 300); do
    grep -q attached "$WORK/probe.log" 2>/dev/null && { PROBE_START_MS=$(now_ms); return 0; }
    sleep 0.05
  done
  echo "fio_toggle.sh: v2p probe did not attach within 15 s:" >&2
  cat "$WORK/probe.log" >&2
  exit 1
}

stop_probe() {
  kill -TERM "$PROBE_PID" 2>/dev/null || true
  wait "$PROBE_PID" || true
  PROBE_PID=""
  local last
  last=$(grep -h "lost" "$WORK/probe.log" | tail -1)
  echo "  $last"
  # For the events per I/O: the config, the probe's lifetime and the events it delivered.
  echo "$1 $PROBE_START_MS $(now_ms) $(sed -E 's/^probe: ([0-9]+) events.*/\1/' <<< "$last")" >> "$PROBE_RUNS"
}

read -r -a configs <<< "$CONFIGS"
for c in "${configs[@]}"; do probe_args "$c" > /dev/null; done
total_s=$(( (CYCLES * ${#configs[@]} * 2 + 1) * (WINDOW_S + 1) + 30 ))
case "$RW" in randread | randwrite) ;; *) echo "fio_toggle.sh: RW is randread or randwrite" >&2; exit 1 ;; esac
fio --name="$RW" --filename="$LOOP" --ioengine=io_uring --direct=1 --rw="$RW" --bs=4k \
    --iodepth=32 --runtime="$total_s" --time_based --numjobs=1 \
    --write_iops_log="$WORK/fio" --log_avg_msec="$LOG_MS" --log_unix_epoch=1 \
    --output="$WORK/fio.out" &
FIO_PID=$!
sleep 2  # fio ramps up

echo "== $RW QD32 4k; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== $CYCLES cycles of ${WINDOW_S}-second windows: without, then ${configs[*]} each between two windows without"
window without
for cycle in $(seq "$CYCLES"); do
  for c in "${configs[@]}"; do
    start_probe "$c"
    window "$c"
    stop_probe "$c"
    window without
  done
  echo "cycle $cycle done"
done
kill -INT "$FIO_PID"
wait "$FIO_PID" || true
FIO_PID=""

echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$WINDOWS" "$PROBE_RUNS" "$LOG_MS" "$WORK"/fio_iops*.log <<'EOF'
import random, statistics, sys

windows = [(n, int(a), int(b)) for n, a, b in (l.split() for l in open(sys.argv[1]))]
probe_runs = [(n, int(a), int(b), int(e)) for n, a, b, e in (l.split() for l in open(sys.argv[2]))
              if e.isdigit()]
log_ms = int(sys.argv[3])
samples = []
for path in sys.argv[4:]:
    for line in open(path):
        f = [x.strip() for x in line.split(",")]
        samples.append((int(f[0]), int(f[1])))
samples.sort()

def mean_iops(a, b):
    v = [iops for t, iops in samples if a <= t <= b]
    return sum(v) / len(v) if v else None

means = [(n, mean_iops(a, b)) for n, a, b in windows]
ratios = {}
for i, (name, m) in enumerate(means):
    if name == "without" or i == 0 or i + 1 >= len(means) or m is None:
        continue
    before, after = means[i - 1][1], means[i + 1][1]
    if before and after:
        ratios.setdefault(name, []).append(m / ((before + after) / 2))

random.seed(1)
without = [m for n, m in means if n == "without" and m]
print(f"without: median {statistics.median(without):.0f} IOPS over {len(without)} windows")
for name, r in ratios.items():
    boot = sorted(statistics.median(random.choices(r, k=len(r))) for _ in range(2000))
    lo, hi = boot[int(0.025 * len(boot))], boot[int(0.975 * len(boot)) - 1]
    with_ = [m for n, m in means if n == name and m]
    print(f"{name}: median {statistics.median(with_):.0f} IOPS; median ratio to the windows around "
          f"it {statistics.median(r):.3f} (95 % CI {lo:.3f}-{hi:.3f}, {len(r)} pairs; "
          f"mean {statistics.mean(r):.3f}) (target >= 0.98)")

# Events per I/O: the events a probe run delivered over fio's I/Os while it was attached.
for name in ratios:
    runs = [(a, b, e) for n, a, b, e in probe_runs if n == name]
    ios = sum(iops * log_ms / 1000 for a, b, _ in runs for t, iops in samples if a <= t <= b)
    events = sum(e for _, _, e in runs)
    seconds = sum(b - a for a, b, _ in runs) / 1000
    if ios and seconds:
        print(f"{name}: {events / ios:.4f} events per I/O, {events * 80 / seconds / 1e6:.2f} MB/s "
              f"of events ({events} events over {ios:.0f} I/Os in {seconds:.1f} s)")
EOF
