#!/usr/bin/env bash
# The flash cache in the data path, measured (docs/cache.md has results and the reasoning).
#
#   sudo bench/cache/run.sh [BUILD_DIR]
#
# 1. A slow origin made real: an xfs on a loop device whose reads are throttled for the
#    `v2p serve` process with cgroup io.max (cgroup v2) or blkio.throttle (v1), RIOPS reads/s.
#    fio (nbd engine) runs 4k random reads with random_distribution=zipf:1.2 over an image of
#    4x the cache size, with the cache and without it; IOPS and p99 latency, median of REPS.
# 2. Overhead when the cache cannot help (no throttle, so the overhead is not hidden): sequential
#    64k reads and 4k uniform random reads with admission off (min_frequency 1000: every read
#    is a miss that is looked up, counted and sent to the origin), against the io_uring path and
#    against the backend stack the cache stage sits on (--file-backend); median of REPS2. Then
#    cache_stage_overhead: the stage's CPU cost per request against a null origin.
# 3. The policy alone: cache_trace_bench, v2p's admission/eviction vs plain LRU on a Zipf trace.
# 4. All-miss on the slow origin: the io_uring export vs the cached export with admission off,
#    both throttled (SECTIONS="4"; not in the default set).
#
# Environment: RIOPS (2000), CACHE_MB (64), REPS (3), RUNTIME (20 s), WARM (30 s), QD (16),
# REPS2 (5), RUNTIME2 (10 s), SECTIONS ("1 2 3").
# Everything it creates lives under one directory in /var/tmp and is removed on exit, also on
# failure or Ctrl-C (mount, loop device, cgroup, server).
set -euo pipefail

BUILD=${1:-$(cd "$(dirname "$0")/../.." && pwd)/build}
V2P=$BUILD/cli/v2p
TRACE=$BUILD/bench/cache/cache_trace_bench
RIOPS=${RIOPS:-2000}
CACHE_MB=${CACHE_MB:-64}
REPS=${REPS:-3}
REPS2=${REPS2:-5}
RUNTIME2=${RUNTIME2:-10}
RUNTIME=${RUNTIME:-20}
WARM=${WARM:-30}
QD=${QD:-16}
IMAGE_MB=$((CACHE_MB * 4))

[[ $(id -u) -eq 0 ]] || { echo "run.sh: needs root (loop device, mount, cgroup)"; exit 77; }
for t in fio mkfs.xfs losetup python3; do
  command -v "$t" >/dev/null || { echo "run.sh: needs $t"; exit 77; }
done
fio --enghelp=nbd >/dev/null 2>&1 || { echo "run.sh: fio lacks the nbd engine"; exit 77; }
[[ -x $V2P && -x $TRACE ]] || { echo "run.sh: build first ($V2P, $TRACE)"; exit 1; }

WORK=$(mktemp -d /var/tmp/v2p-cache-bench.XXXXXX)
MNT=$WORK/mnt
LOOP=""
CG=""
SERVE_PID=""
cleanup() {
  set +e
  [[ -n $SERVE_PID ]] && kill -INT "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
  mountpoint -q "$MNT" && umount "$MNT"
  [[ -n $LOOP ]] && losetup -d "$LOOP"
  [[ -n $CG ]] && rmdir "$CG"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap "exit 130" INT TERM

truncate -s $((IMAGE_MB * 2 + 512))M "$WORK/fs.img"
LOOP=$(losetup --find --show --direct-io=on "$WORK/fs.img")
mkfs.xfs -q -f "$LOOP"
mkdir -p "$MNT"
mount "$LOOP" "$MNT"
dd if=/dev/urandom of="$MNT/disk.raw" bs=1M count=$IMAGE_MB oflag=direct status=none
DEV=$(lsblk -dno MAJ:MIN "$LOOP" | tr -d ' ')

# The throttle: cgroup v2 io.max when the io controller is there, else v1 blkio.throttle.
CG2=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/mounts)
if [[ -n $CG2 ]] && grep -qw io "$CG2/cgroup.controllers"; then
  grep -qw io "$CG2/cgroup.subtree_control" || echo +io >"$CG2/cgroup.subtree_control"
  CG=$CG2/v2p-cache-bench-$$
  mkdir "$CG"
  echo "$DEV riops=$RIOPS" >"$CG/io.max"
  THROTTLE="cgroup v2 io.max riops=$RIOPS on $LOOP ($DEV)"
else
  CG=/sys/fs/cgroup/blkio/v2p-cache-bench-$$
  mkdir "$CG"
  echo "$DEV $RIOPS" >"$CG/blkio.throttle.read_iops_device"
  THROTTLE="cgroup v1 blkio.throttle.read_iops_device $RIOPS on $LOOP ($DEV) (no v2 io controller here)"
fi

# serve THROTTLED(0/1) EXTRA_ARGS...: starts `v2p serve` (in the cgroup when throttled).
serve() {
  local throttled=$1
  shift
  rm -f "$WORK/s.sock"
  (
    [[ $throttled == 1 ]] && echo $BASHPID >"$CG/cgroup.procs"
    exec "$V2P" serve --vm bench --socket "$WORK/s.sock" "$@"
  ) >"$WORK/serve.log" 2>&1 &
  SERVE_PID=$!
  for _ in $(seq 100); do
    grep -q "v2p serve: ready" "$WORK/serve.log" && return 0
    sleep 0.1
  done
  cat "$WORK/serve.log"
  return 1
}
stop_serve() {
  kill -INT "$SERVE_PID"
  wait "$SERVE_PID" || true
  SERVE_PID=""
  grep "cache vm" "$WORK/serve.log" | sed 's/^/    /' || true
}
# fio_run NAME ARGS...: prints "IOPS P99_US MB/s"
fio_run() {
  local name=$1
  shift
  fio --name="$name" --ioengine=nbd --uri="nbd+unix:///disk?socket=$WORK/s.sock" \
    --size=${IMAGE_MB}M --output-format=json --output="$WORK/fio.json" "$@" >/dev/null
  python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["jobs"][0]["read"]
p = r["clat_ns"]["percentile"].get("99.000000", 0) / 1000
print("%.0f %.0f %.1f" % (r["iops"], p, r["bw_bytes"] / 1e6))' "$WORK/fio.json"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

ZIPF=(--rw=randread --bs=4k --iodepth=$QD --random_distribution=zipf:1.2 --time_based)
SECTIONS=${SECTIONS:-1 2 3}
if [[ " $SECTIONS " == *" 1 "* ]]; then
echo "== 1. zipf:1.2 4k randread, image ${IMAGE_MB} MiB, cache ${CACHE_MB} MiB, QD $QD, $THROTTLE"
: >"$WORK/nocache" ; : >"$WORK/cache"
run_nocache() {
  serve 1 --image "$MNT/disk.raw" --vdisk disk
  read -r iops p99 _ < <(fio_run zipf "${ZIPF[@]}" --runtime="$RUNTIME")
  stop_serve
  echo "  rep $rep without cache: $iops IOPS, p99 $p99 us"
  echo "$iops $p99" >>"$WORK/nocache"
}
run_cache() {
  rm -f "$WORK/cache.bin"
  serve 1 --image "$MNT/disk.raw" --vdisk disk --cache "$WORK/cache.bin" --cache-size ${CACHE_MB}M
  fio_run warm "${ZIPF[@]}" --runtime="$WARM" >/dev/null
  read -r iops p99 _ < <(fio_run zipf "${ZIPF[@]}" --runtime="$RUNTIME")
  stop_serve
  echo "  rep $rep with cache:    $iops IOPS, p99 $p99 us"
  echo "$iops $p99" >>"$WORK/cache"
}
for rep in $(seq "$REPS"); do
  if ((rep % 2)); then run_nocache; run_cache; else run_cache; run_nocache; fi
done
ni=$(cut -d' ' -f1 "$WORK/nocache" | median); np=$(cut -d' ' -f2 "$WORK/nocache" | median)
ci=$(cut -d' ' -f1 "$WORK/cache" | median); cp=$(cut -d' ' -f2 "$WORK/cache" | median)
echo "  median: without cache $ni IOPS p99 $np us | with cache $ci IOPS p99 $cp us | x$(python3 -c "print(f'{$ci/$ni:.2f}')") IOPS"

fi

if [[ " $SECTIONS " == *" 2 "* ]]; then
echo "== 2. overhead when the cache admits nothing (min_frequency 1000; no throttle), median of $REPS2"
cat >"$WORK/noadmit.json" <<JSON
{"vms": [{"name": "bench", "vdisks": [{"name": "disk", "image": "$MNT/disk.raw"}]}],
 "cache": {"file": "$WORK/cache.bin", "size": "${CACHE_MB}M", "min_frequency": 1000}}
JSON
# overhead LABEL FIO_ARGS...: three servers per repetition, in rotating order: the io_uring
# path (what an image export uses without a cache), the same image through the backend stack
# without a cache (--file-backend: the path a cache stage sits on), and with the cache stage.
overhead() {
  local label=$1
  shift
  : >"$WORK/uring"; : >"$WORK/stack"; : >"$WORK/cached"
  local order=(uring stack cached)
  for rep in $(seq "$REPS2"); do
    for kind in "${order[@]}"; do
      rm -f "$WORK/cache.bin"
      case $kind in
        uring) serve 0 --image "$MNT/disk.raw" --vdisk disk ;;
        stack) serve 0 --image "$MNT/disk.raw" --vdisk disk --file-backend ;;
        cached) serve 0 --config "$WORK/noadmit.json" ;;
      esac
      fio_run o "$@" | cut -d' ' -f1 >>"$WORK/$kind"
      stop_serve >/dev/null
    done
    order=("${order[@]:1}" "${order[0]}")
  done
  local u s c
  u=$(median <"$WORK/uring"); s=$(median <"$WORK/stack"); c=$(median <"$WORK/cached")
  echo "  $label: io_uring path $u IOPS | backend stack $s IOPS | stack + cache stage $c IOPS"
  echo "    cache stage overhead vs the stack it sits on: $(python3 -c "print(f'{100*(1-$c/$s):.1f}')")%, vs io_uring path: $(python3 -c "print(f'{100*(1-$c/$u):.1f}')")%"
}
overhead "seq 64k reads" --rw=read --bs=64k --iodepth=$QD --time_based --runtime="$RUNTIME2"
overhead "4k uniform randread" --rw=randread --bs=4k --iodepth=$QD --time_based --runtime="$RUNTIME2"
echo "  CPU cost of the stage per request against a null origin (best of 3):"
"$BUILD/bench/cache/cache_stage_overhead" "$MNT/disk.raw" --bs 4096 --requests 1000000 | tail -1 | sed 's/^/    1 thread:  /'
"$BUILD/bench/cache/cache_stage_overhead" "$MNT/disk.raw" --bs 4096 --requests 1000000 --threads 8 | tail -1 | sed 's/^/    8 threads: /'

fi

if [[ " $SECTIONS " == *" 4 "* ]]; then
echo "== 4. all-miss on the slow origin (admission off, $THROTTLE), 4k uniform randread, median of $REPS2"
# What an operator pays for a cache that never hits, on the kind of origin a cache is put in
# front of: the io_uring export vs the cached export, both in the throttled cgroup, alternating.
cat >"$WORK/noadmit.json" <<JSON
{"vms": [{"name": "bench", "vdisks": [{"name": "disk", "image": "$MNT/disk.raw"}]}],
 "cache": {"file": "$WORK/cache.bin", "size": "${CACHE_MB}M", "min_frequency": 1000}}
JSON
: >"$WORK/slow_uring"; : >"$WORK/slow_cached"
for rep in $(seq "$REPS2"); do
  for kind in $( ((rep % 2)) && echo "slow_uring slow_cached" || echo "slow_cached slow_uring"); do
    rm -f "$WORK/cache.bin"
    case $kind in
      slow_uring) serve 1 --image "$MNT/disk.raw" --vdisk disk ;;
      slow_cached) serve 1 --config "$WORK/noadmit.json" ;;
    esac
    fio_run m --rw=randread --bs=4k --iodepth=$QD --time_based --runtime="$RUNTIME2" |
      cut -d' ' -f1,2 >>"$WORK/$kind"
    stop_serve >/dev/null
  done
done
u=$(cut -d' ' -f1 "$WORK/slow_uring" | median); c=$(cut -d' ' -f1 "$WORK/slow_cached" | median)
up=$(cut -d' ' -f2 "$WORK/slow_uring" | median); cpp=$(cut -d' ' -f2 "$WORK/slow_cached" | median)
echo "  no cache $u IOPS p99 $up us | cache, all misses $c IOPS p99 $cpp us | overhead $(python3 -c "print(f'{100*(1-$c/$u):.1f}')")%"
fi

if [[ " $SECTIONS " == *" 3 "* ]]; then
echo "== 3. policy alone: trace of 4x the cache, zipf 1.2 (and 0.9)"
"$TRACE" --slots 4096 --ratio 4 --alpha 1.2 --seeds 5 | tail -1
"$TRACE" --slots 4096 --ratio 4 --alpha 0.9 --seeds 5 | tail -1
fi
