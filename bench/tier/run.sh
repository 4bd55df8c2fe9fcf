#!/usr/bin/env bash
# Tier benchmark: fio (nbd engine) against `v2p serve` three ways in one run, on the same data:
#   all-slow  the image on the slow device (a loop device throttled by the block cgroup)
#   all-fast  the image on the fast device (an unthrottled loop device)
#   tiered    the image on the slow device, --tier-fast file on the fast device
# The workload is zipf-distributed random 4k reads over a 64 MiB region that moves to another
# part of the vdisk after --phase seconds. Prints IOPS and p99 read latency per phase, the warm
# IOPS ratio tiered/all-fast, and how long the tiered run takes after the move to get back to 80%
# of all-fast (from a 1 s IOPS log).
#
#   bench/tier/run.sh [--phase SEC] [--slow-iops N] [--dir DIR] [--v2p PATH] [--keep DIR] [--half-life SEC]
#
# Needs root, fio, mkfs.ext4, losetup, jq. Everything it makes (loop devices, mounts, cgroup,
# processes) is removed on exit, also on failure.
set -euo pipefail

PHASE=20
SLOW_IOPS=500
DIR=/var/tmp/v2p-tier-bench
SRC=$(cd "$(dirname "$0")/../.." && pwd)
V2P="$SRC/build/cli/v2p"
HALF_LIFE=2  # heat half-life (s): how fast old heat fades, i.e. how fast tiering follows a move
KEEP=""  # --keep DIR: copy fio's JSON and IOPS logs there
VDISK_MIB=512
FAST_MIB=128
while [[ $# -gt 0 ]]; do
  case "$1" in
    --phase) PHASE=$2; shift 2 ;;
    --slow-iops) SLOW_IOPS=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --v2p) V2P=$2; shift 2 ;;
    --keep) KEEP=$2; shift 2 ;;
    --half-life) HALF_LIFE=$2; shift 2 ;;
    *) echo "usage: $0 [--phase SEC] [--slow-iops N] [--dir DIR] [--v2p PATH] [--keep DIR] [--half-life SEC]" >&2; exit 2 ;;
  esac
done
[[ $(id -u) -eq 0 ]] || { echo "needs root (loop devices, cgroups)" >&2; exit 1; }
for tool in fio mkfs.ext4 losetup jq; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done
"$V2P" serve --help 2>&1 | grep -- --tier-fast >/dev/null || { echo "$V2P has no --tier-fast" >&2; exit 1; }

LOOPS=()
MOUNTS=()
CGROUP=""
SERVE_PID=""
cleanup() {
  set +e
  [[ -n "$SERVE_PID" ]] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
  for m in "${MOUNTS[@]}"; do umount "$m"; done
  for l in "${LOOPS[@]}"; do losetup -d "$l"; done
  [[ -n "$CGROUP" ]] && rmdir "$CGROUP"
  [[ -n "$KEEP" ]] && mkdir -p "$KEEP" && cp "$DIR"/*.json "$DIR"/*.log "$DIR"/*.txt "$KEEP"/ 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT

mkdir -p "$DIR"
make_fs() {  # name -> mounts $DIR/$name on a fresh ext4 loop device, sets DEV (no subshell:
             # LOOPS and MOUNTS must reach the cleanup)
  truncate -s 2G "$DIR/$1.img"
  local dev
  dev=$(losetup --direct-io=on --show -f "$DIR/$1.img")
  LOOPS+=("$dev")
  mkfs.ext4 -q -F "$dev"
  mkdir -p "$DIR/$1"
  mount "$dev" "$DIR/$1"
  MOUNTS+=("$DIR/$1")
  DEV=$dev
}
make_fs slow
SLOW_DEV=$DEV
make_fs fast
FAST_DEV=$DEV
SLOW_MM=$(lsblk -dno MAJ:MIN "$SLOW_DEV" | tr -d ' ')

# Real data everywhere the workload reads (a hole would be read without touching the device).
dd if=/dev/urandom of="$DIR/slow/disk0.raw" bs=1M count=$VDISK_MIB status=none conv=fsync
cp "$DIR/slow/disk0.raw" "$DIR/fast/disk0.raw"
sync

# The slow device's throttle: cgroup v2 io.max when the io controller is on a v2 hierarchy, else
# the same block throttle through the v1 blkio controller (hybrid hosts such as this one).
V2ROOT=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/mounts)
if [[ -n "$V2ROOT" ]] && grep -qw io "$V2ROOT/cgroup.controllers" 2>/dev/null; then
  echo "+io" > "$V2ROOT/cgroup.subtree_control"
  CGROUP="$V2ROOT/v2p-tier-bench.$$"
  mkdir "$CGROUP"
  echo "$SLOW_MM riops=$SLOW_IOPS wiops=$SLOW_IOPS" > "$CGROUP/io.max"
  THROTTLE="cgroup v2 io.max riops=$SLOW_IOPS wiops=$SLOW_IOPS on $SLOW_DEV"
else
  V1=$(awk '$3 == "cgroup" && $4 ~ /blkio/ {print $2; exit}' /proc/mounts)
  [[ -n "$V1" ]] || { echo "no io (v2) or blkio (v1) cgroup controller" >&2; exit 1; }
  CGROUP="$V1/v2p-tier-bench.$$"
  mkdir "$CGROUP"
  echo "$SLOW_MM $SLOW_IOPS" > "$CGROUP/blkio.throttle.read_iops_device"
  echo "$SLOW_MM $SLOW_IOPS" > "$CGROUP/blkio.throttle.write_iops_device"
  THROTTLE="cgroup v1 blkio.throttle read/write_iops_device=$SLOW_IOPS on $SLOW_DEV (no v2 io controller here)"
fi

serve() {  # args for v2p serve after the common ones; waits for the ready line
  rm -f "$DIR/s.sock" "$DIR/serve.log"
  ( echo $BASHPID > "$CGROUP/cgroup.procs"
    exec "$V2P" serve --vm vm1 --vdisk disk0 --socket "$DIR/s.sock" "$@" ) > "$DIR/serve.log" 2>&1 &
  SERVE_PID=$!
  for _ in $(seq 100); do grep -q "v2p serve: ready" "$DIR/serve.log" 2>/dev/null && return; sleep 0.1; done
  cat "$DIR/serve.log" >&2; exit 1
}
stop_serve() { kill -INT "$SERVE_PID"; wait "$SERVE_PID" || true; SERVE_PID=""; }

# Two phases: zipf over [0, 64M), then over [256M, 320M).
run_fio() {  # name
  fio --output-format=json --output="$DIR/$1.json" --ioengine=nbd \
      --uri="nbd+unix:///disk0?socket=$DIR/s.sock" --rw=randread --bs=4k --iodepth=16 \
      --random_distribution=zipf:1.1 --time_based --runtime="$PHASE" --size=64M \
      --log_avg_msec=1000 --write_iops_log="$DIR/$1" --randrepeat=1 \
      --name=before --offset=0 --name=after --offset=256M --stonewall > /dev/null
}

serve --image "$DIR/slow/disk0.raw"
run_fio slow
stop_serve
serve --image "$DIR/fast/disk0.raw"
run_fio fast
stop_serve
serve --image "$DIR/slow/disk0.raw" --tier-fast "$DIR/fast/disk0.tier" \
      --tier-fast-size ${FAST_MIB}M --tier-extent 1M --tier-rate 256M --tier-tick-ms 200 --tier-half-life "$HALF_LIFE"
run_fio tiered
"$V2P" tier status "$DIR/fast/disk0.tier" | tee "$DIR/tier-status.txt"
stop_serve

iops() { jq -r ".jobs[] | select(.jobname == \"$2\") | .read.iops" "$DIR/$1.json"; }
p99() { jq -r ".jobs[] | select(.jobname == \"$2\") | .read.clat_ns.percentile[\"99.000000\"] / 1000" "$DIR/$1.json"; }
# Warm IOPS: the mean of the last third of a phase's 1 s IOPS samples.
warm() {  # name job-index(1,2)
  awk -F, -v n="$PHASE" '{ s[NR] = $2 } END { k = int(n / 3); t = 0; c = 0;
    for (i = NR - k + 1; i <= NR; i++) { t += s[i]; c++ } printf "%.0f", t / c }' "$DIR/$1_iops.$2.log"
}
echo
echo "tier bench: vdisk ${VDISK_MIB} MiB, fast tier ${FAST_MIB} MiB, extents 1 MiB; fio nbd randread 4k QD16 zipf:1.1 over 64 MiB, moved after ${PHASE} s"
echo "slow device: $THROTTLE; fast device: $FAST_DEV unthrottled; heat half-life ${HALF_LIFE} s, rate 256M/s"
printf "%-10s %12s %12s %12s %12s %14s %14s\n" config "IOPS-before" "IOPS-after" "warm-before" "warm-after" "p99us-before" "p99us-after"
for c in slow fast tiered; do
  printf "%-10s %12.0f %12.0f %12s %12s %14.0f %14.0f\n" "$c" "$(iops $c before)" "$(iops $c after)" \
    "$(warm $c 1)" "$(warm $c 2)" "$(p99 $c before)" "$(p99 $c after)"
done
FAST_WARM=$(warm fast 2)
TIER_WARM1=$(warm tiered 1)
TIER_WARM2=$(warm tiered 2)
echo "warm tiered / all-fast: before the move $(awk -v a="$TIER_WARM1" -v b="$(warm fast 1)" 'BEGIN{printf "%.2f", a/b}'), after $(awk -v a="$TIER_WARM2" -v b="$FAST_WARM" 'BEGIN{printf "%.2f", a/b}')"
# Time to adapt: seconds after the move until a 1 s IOPS sample of the tiered run reaches 80% of
# the all-fast warm IOPS.
awk -F, -v target="$(awk -v b="$FAST_WARM" 'BEGIN{print 0.8 * b}')" \
  '$2 >= target { printf "time to adapt after the hot spot moved: %.1f s (first 1 s sample >= 80%% of all-fast)\n", $1 / 1000; found = 1; exit }
   END { if (!found) print "time to adapt: not within the phase" }' "$DIR/tiered_iops.2.log"
