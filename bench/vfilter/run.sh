#!/usr/bin/env bash
# vfilter benchmark: fio against the v2p export (tagging on and off), qemu-nbd,
# qemu-storage-daemon's NBD export, and io_uring straight on the file, all on the same raw image
# on a real file system. Prints a table and the ratios docs/vfilter.md quotes.
#
#   bench/vfilter/run.sh [--runtime SEC] [--dir DIR] [--size-mib N] [--v2p PATH]
#
# Defaults: 8 s per run (25 runs, about 4 minutes), image in /var/tmp/v2p-bench (must not be
# tmpfs: O_DIRECT is part of what is measured).
set -euo pipefail

RUNTIME=8
DIR=/var/tmp/v2p-bench
SIZE_MIB=1024
SRC=$(cd "$(dirname "$0")/../.." && pwd)
V2P=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runtime) RUNTIME=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --size-mib) SIZE_MIB=$2; shift 2 ;;
    --v2p) V2P=$2; shift 2 ;;
    *) echo "usage: $0 [--runtime SEC] [--dir DIR] [--size-mib N] [--v2p PATH]" >&2; exit 2 ;;
  esac
done
# Any binary with the serve subcommand: the full v2p, or the serve-only test tool.
if [[ -z "$V2P" ]]; then
  for c in "$SRC/build/cli/v2p" "$SRC/build-vfilter/cli/v2p" \
           "$SRC/build-vfilter/tests/vfilter/vfilter_serve_tool"; do
    if [[ -x "$c" ]] && "$c" --help 2>/dev/null | grep -qw serve; then V2P=$c; break; fi
  done
fi
[[ -n "$V2P" ]] || { echo "no v2p binary with 'serve' found; build it or pass --v2p" >&2; exit 1; }
for tool in fio qemu-nbd qemu-storage-daemon jq; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done

mkdir -p "$DIR"
fstype=$(stat -f -c %T "$DIR")
[[ "$fstype" != tmpfs ]] || { echo "$DIR is on tmpfs; choose a real file system" >&2; exit 1; }
IMG="$DIR/bench.raw"
SOCK="$DIR/bench.sock"
RESULTS="$DIR/results.tsv"
SERVER_PID=""

cleanup() {
  if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -f "$SOCK" "$IMG" "$DIR/server.log"
}
trap cleanup EXIT

wait_for_socket() {
  for _ in $(seq 1 200); do [[ -S "$SOCK" ]] && return 0; sleep 0.05; done
  echo "server did not create $SOCK:" >&2; cat "$DIR/server.log" >&2; exit 1
}

start_server() {  # name
  rm -f "$SOCK"
  case "$1" in
    v2p-tag) "$V2P" serve --image "$IMG" --vm bench --vdisk disk0 --socket "$SOCK" >"$DIR/server.log" 2>&1 & ;;
    v2p-notag) "$V2P" serve --image "$IMG" --vm bench --vdisk disk0 --socket "$SOCK" --no-tagging >"$DIR/server.log" 2>&1 & ;;
    qemu-nbd) qemu-nbd -f raw --cache=none --aio=io_uring --shared=16 -t -x disk0 -k "$SOCK" "$IMG" >"$DIR/server.log" 2>&1 & ;;
    qsd) qemu-storage-daemon \
           --blockdev "driver=file,node-name=file0,filename=$IMG,cache.direct=on,aio=io_uring" \
           --blockdev driver=raw,node-name=disk0,file=file0 \
           --nbd-server "addr.type=unix,addr.path=$SOCK" \
           --export type=nbd,id=e0,node-name=disk0,name=disk0,writable=on >"$DIR/server.log" 2>&1 & ;;
  esac
  SERVER_PID=$!
  wait_for_socket
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

WORKLOADS=("randread 4k 1" "randread 4k 32" "randwrite 4k 1" "randwrite 4k 32" "read 64k 32")

run_fio() {  # target rw bs qd
  local target=$1 rw=$2 bs=$3 qd=$4 engine
  if [[ "$target" == io_uring-file ]]; then
    engine=(--ioengine=io_uring --filename="$IMG" --direct=1)
  else
    engine=(--ioengine=nbd "--uri=nbd+unix:///disk0?socket=$SOCK")
  fi
  fio --name=bench "${engine[@]}" --rw="$rw" --bs="$bs" --iodepth="$qd" --size="${SIZE_MIB}M" \
      --time_based --runtime="$RUNTIME" --ramp_time=1 --randrepeat=0 --norandommap \
      --output-format=json 2>/dev/null |
    sed -n '/^{/,$p' |  # the nbd engine prints a line before the JSON
    jq -r --arg t "$target" --arg w "$rw-$bs-qd$qd" \
      '.jobs[0] | (if .read.io_bytes > 0 then .read else .write end) |
       [$t, $w, (.iops|floor), ((.bw_bytes/1048576)*10|floor/10), ((.clat_ns.mean/1000)*10|floor/10),
        ((.clat_ns.percentile["99.000000"] // 0)/1000|floor)] | @tsv'
}

echo "v2p vfilter bench: image $IMG ($SIZE_MIB MiB on $fstype), ${RUNTIME}s per run, $(nproc) CPUs, $(uname -r)"
echo "v2p binary: $V2P"
# A fully written image: reads of holes would never reach the disk.
fio --name=fill --ioengine=io_uring --direct=1 --filename="$IMG" --rw=write --bs=1M \
    --size="${SIZE_MIB}M" --output-format=terse >/dev/null
sync
# The host disk is noisy right after the fill and drifts over minutes: run every target for one
# workload back to back, alternating the order, so no target always comes first.
: >"$RESULTS"
TARGETS=(v2p-tag v2p-notag qemu-nbd qsd io_uring-file)
i=0
for w in "${WORKLOADS[@]}"; do
  read -r rw bs qd <<<"$w"
  order=("${TARGETS[@]}")
  if (( i++ % 2 == 1 )); then order=(io_uring-file qsd qemu-nbd v2p-notag v2p-tag); fi
  for target in "${order[@]}"; do
    [[ "$target" == io_uring-file ]] || start_server "$target"
    run_fio "$target" "$rw" "$bs" "$qd" >>"$RESULTS"
    [[ "$target" == io_uring-file ]] || stop_server
  done
done
sort -s -t$'\t' -k1,1 "$RESULTS" -o "$RESULTS"

printf '\n%-14s %-20s %10s %10s %12s %12s\n' target workload IOPS MiB/s "mean us" "p99 us"
while IFS=$'\t' read -r t w iops bw lat p99; do
  printf '%-14s %-20s %10s %10s %12s %12s\n' "$t" "$w" "$iops" "$bw" "$lat" "$p99"
done <"$RESULTS"

val() {  # target workload column(3=iops,5=lat)
  awk -F'\t' -v t="$1" -v w="$2" -v c="$3" '$1==t && $2==w {print $c}' "$RESULTS"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%+.1f%%", (a - b) * 100 / b; else print "n/a" }'; }

echo
echo "ratios"
for w in randread-4k-qd32 randwrite-4k-qd32; do
  echo "  IOPS v2p/qemu-nbd  $w: $(ratio "$(val v2p-tag $w 3)" "$(val qemu-nbd $w 3)")" \
       "  v2p/qsd: $(ratio "$(val v2p-tag $w 3)" "$(val qsd $w 3)")" \
       "  v2p/io_uring-file: $(ratio "$(val v2p-tag $w 3)" "$(val io_uring-file $w 3)")"
done
for w in randread-4k-qd1 randwrite-4k-qd1; do
  echo "  QD1 mean latency v2p/qemu-nbd $w: $(ratio "$(val v2p-tag $w 5)" "$(val qemu-nbd $w 5)")" \
       "  v2p/qsd: $(ratio "$(val v2p-tag $w 5)" "$(val qsd $w 5)")"
done
echo "  tagging overhead (tag on vs off):"
for w in randread-4k-qd1 randread-4k-qd32 randwrite-4k-qd32 read-64k-qd32; do
  echo "    $w IOPS $(pct "$(val v2p-tag $w 3)" "$(val v2p-notag $w 3)")" \
       " mean latency $(pct "$(val v2p-tag $w 5)" "$(val v2p-notag $w 5)")"
done
