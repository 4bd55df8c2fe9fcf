#!/usr/bin/env bash
# vhost-user-blk side by side, in interleaved rounds in one run: v2p serve --vhost-user and
# qemu-storage-daemon's vhost-user-blk export, both driven by the project's client
# (vhost_user_bench, the same for both), and io_uring straight on the image (fio) as the local
# reference. 4k randread/randwrite at QD1 and QD32 on a raw image on a real file system, with
# O_DIRECT everywhere. Prints medians of the rounds, the ratios issue #20 asks for, and the load
# average (a loaded machine makes every number noisy: re-run on a quiet one).
#
#   bench/vfilter/vhost_user_ab.sh [--rounds N] [--seconds S] [--dir DIR] [--size-mib N]
set -euo pipefail

ROUNDS=3
SECONDS_EACH=5
DIR=/var/tmp/v2p-vhost-bench
SIZE_MIB=1024
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$SRC/build}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECONDS_EACH=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --size-mib) SIZE_MIB=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--seconds S] [--dir DIR] [--size-mib N]" >&2; exit 2 ;;
  esac
done
V2P=$BUILD/cli/v2p
CLIENT=$BUILD/bench/vfilter/vhost_user_bench
for f in "$V2P" "$CLIENT"; do [[ -x $f ]] || { echo "build $f first" >&2; exit 1; }; done
for tool in fio qemu-storage-daemon; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done
mkdir -p "$DIR"
[[ $(stat -f -c %T "$DIR") != tmpfs ]] || { echo "$DIR is on tmpfs; choose a real file system" >&2; exit 1; }
IMG=$DIR/bench.raw
RESULTS=$DIR/results.tsv
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -f "$IMG" "$DIR"/*.sock "$DIR"/*.log "$RESULTS"
}
trap cleanup EXIT

# A fully written image: reads of holes would never reach the disk.
dd if=/dev/urandom of="$IMG" bs=1M count="$SIZE_MIB" oflag=direct status=none
wait_socket() { for _ in $(seq 1 200); do [[ -S $1 ]] && return 0; sleep 0.05; done; echo "no $1" >&2; exit 1; }

"$V2P" serve --image "$IMG" --vm bench --vdisk disk0 --vhost-user "$DIR/v2p.sock" >"$DIR/v2p.log" 2>&1 &
PIDS+=($!)
qemu-storage-daemon \
  --blockdev "driver=file,node-name=file0,filename=$IMG,cache.direct=on,aio=io_uring" \
  --blockdev driver=raw,node-name=disk0,file=file0 \
  --export "type=vhost-user-blk,id=e0,node-name=disk0,addr.type=unix,addr.path=$DIR/qsd.sock,writable=on" \
  >"$DIR/qsd.log" 2>&1 &
PIDS+=($!)
wait_socket "$DIR/v2p.sock"
wait_socket "$DIR/qsd.sock"

run_vhost() {  # socket rw qd -> "kiops p50_us"
  "$CLIENT" --socket "$1" --rw "$2" --qd "$3" --seconds "$SECONDS_EACH" |
    sed -E 's/kiops=([0-9.]+) p50_us=([0-9.]+).*/\1 \2/'
}
run_local() {  # rw qd -> "kiops p50_us"
  fio --name=local --filename="$IMG" --ioengine=io_uring --direct=1 --rw="$1" --bs=4k \
    --iodepth="$2" --runtime="$SECONDS_EACH" --time_based --output-format=json 2>/dev/null |
    python3 -c 'import json,sys
j = json.load(sys.stdin)["jobs"][0]
d = j["read"] if j["read"]["io_bytes"] else j["write"]
print("%.1f %.1f" % (d["iops"] / 1000, d["clat_ns"]["percentile"]["50.000000"] / 1000))'
}

: >"$RESULTS"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$ROUNDS"); do
  for w in "randread 1" "randread 32" "randwrite 1" "randwrite 32"; do
    set -- $w
    # The order rotates each round, so drift in the machine's load spreads over all three.
    servers=(v2p qsd local)
    for ((k = 0; k < round - 1; k++)); do servers=("${servers[@]:1}" "${servers[0]}"); done
    for s in "${servers[@]}"; do
      case $s in
        v2p) r=$(run_vhost "$DIR/v2p.sock" "$1" "$2") ;;
        qsd) r=$(run_vhost "$DIR/qsd.sock" "$1" "$2") ;;
        local) r=$(run_local "$1" "$2") ;;
      esac
      printf '%s\t%s\t%s\t%s\n' "$s" "$1" "$2" "$r" | tr ' ' '\t' >>"$RESULTS"
    done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.split('\t') for l in open(sys.argv[1]).read().split('\n') if l]
med = {}
for s, rw, qd, kiops, p50 in rows:
    med.setdefault((s, rw, qd), []).append((float(kiops), float(p50)))
print(f"{'workload':14} {'v2p kIOPS':>10} {'qsd kIOPS':>10} {'local kIOPS':>12} {'v2p/qsd':>8} {'v2p/local':>10} {'v2p p50':>8} {'local p50':>10} {'+us':>6}")
for rw in ("randread", "randwrite"):
    for qd in ("1", "32"):
        m = {s: (statistics.median(x[0] for x in med[(s, rw, qd)]),
                 statistics.median(x[1] for x in med[(s, rw, qd)])) for s in ("v2p", "qsd", "local")}
        print(f"{rw + ' QD' + qd:14} {m['v2p'][0]:10.1f} {m['qsd'][0]:10.1f} {m['local'][0]:12.1f} "
              f"{m['v2p'][0] / m['qsd'][0]:8.2f} {m['v2p'][0] / m['local'][0]:10.2f} "
              f"{m['v2p'][1]:8.1f} {m['local'][1]:10.1f} {m['v2p'][1] - m['local'][1]:6.1f}")
print("targets (issue #20): v2p/qsd >= 1.2, v2p/local >= 0.9 at QD32, QD1 p50 <= local + 30 us")
PY
