#!/usr/bin/env bash
# The filter stack's cost: fio nbd 4k randread/randwrite at QD32 and QD1 against `v2p serve`
# through stacks built by the stack builder and against a reference binary (today's io_uring
# path, e.g. main's build), all in one run on the same image. Configurations, interleaved round by
# round in rotating order so drift and neighbours hit all alike; medians of the rounds, and each
# one's ratio to "base":
#   base        BASE_V2P serve --image       (the reference binary's io_uring path)
#   empty       V2P serve --image            (the image stage alone: the io_uring path as a stage)
#   workers     --file-backend               (every request through a tagged worker: the old cost)
#   passthru    --filter passthru            (samples/passthru-filter, an asynchronous filter)
#   cache-tier  --cache + --tier-fast        (flash cache over tier over image, blocking stages)
#
#   bench/vfilter/stack_ab.sh DIR [ROUNDS] [SECONDS]   (DIR on a real file system: O_DIRECT)
#   bench/vfilter/stack_ab.sh fast [ROUNDS] [SECONDS]  (ext4 on a `losetup --direct-io=on` loop
#                                                       over a tmpfs file: the CPU-bound regime)
# Env: V2P (default build/cli/v2p), BASE_V2P (default V2P), PASSTHRU (default the test build of
# the sample).
set -euo pipefail
dir=${1:?usage: stack_ab.sh DIR|fast [ROUNDS] [SECONDS]}
rounds=${2:-5}
secs=${3:-4}
top=$(cd "$(dirname "$0")/../.." && pwd)
v2p=${V2P:-$top/build/cli/v2p}
base_v2p=${BASE_V2P:-$v2p}
passthru=${PASSTHRU:-$top/build/tests/vfilter/libtest_passthru_filter.so}
for f in "$v2p" "$base_v2p" "$passthru"; do
  [[ -e $f ]] || { echo "missing $f (build it first)" >&2; exit 1; }
done
for t in fio jq; do command -v $t >/dev/null || { echo "$t is required" >&2; exit 1; }; done
pid=""
loop=""
shm=""
img=""
sock=""
results=""
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -f "$img" "$sock" "$dir"/cache.bin "$dir"/fast.tier* "$dir"/serve.log "$dir"/fio.json
  if [[ -n $loop ]]; then
    umount "$dir" 2>/dev/null || { sleep 2; umount "$dir" 2>/dev/null; } || true
    losetup -d "$loop" 2>/dev/null || true
    rmdir "$dir" 2>/dev/null || true
  fi
  [[ -z $shm ]] || rm -f "$shm"
  [[ -z $results ]] || rm -f "$results"
}
trap cleanup EXIT
if [[ $dir == fast ]]; then
  # The fast device: what is left is the CPU cost of the data path.
  [[ $(id -u) == 0 ]] || { echo "the fast regime needs root (losetup, mount)" >&2; exit 1; }
  shm=$(mktemp /dev/shm/v2p-stack-ab.XXXXXX)
  truncate -s 1200M "$shm"
  loop=$(losetup --direct-io=on --find --show "$shm")
  mkfs.ext4 -q -F "$loop"
  dir=$(mktemp -d /tmp/v2p-stack-ab.XXXXXX)
  mount "$loop" "$dir"
fi
[[ $(stat -f -c %T "$dir") != tmpfs ]] || { echo "$dir is on tmpfs" >&2; exit 1; }
mkdir -p "$dir"
img=$dir/stack.raw
sock=$dir/stack.sock
results=$(mktemp /tmp/v2p-stack-ab-results.XXXXXX)
fio --name=fill --filename="$img" --size=512M --rw=write --bs=1M --direct=1 >/dev/null

flags() {  # configuration -> extra serve flags
  case $1 in
    base | empty) ;;
    workers) echo --file-backend ;;
    passthru) echo --filter "$passthru" ;;
    cache-tier)
      echo --cache "$dir/cache.bin" --cache-size 256M --tier-fast "$dir/fast.tier" \
        --tier-fast-size 256M --tier-extent 1M ;;
  esac
}
run() {  # configuration rw qd -> IOPS
  rm -f "$dir"/cache.bin "$dir"/fast.tier* "$sock"
  # shellcheck disable=SC2046
  local bin=$v2p
  [[ $1 != base ]] || bin=$base_v2p
  "$bin" serve --image "$img" --vm bench --vdisk d --socket "$sock" $(flags "$1") \
    >"$dir/serve.log" 2>&1 &
  pid=$!
  # The listening socket, up to 60 s (creating the cache and tier files is slow on a busy disk;
  # the log's ready line may sit in a stdio buffer).
  for _ in $(seq 1200); do [[ -S $sock ]] && break; sleep 0.05; done
  if [[ ! -S $sock ]]; then
    echo "$1: v2p serve is not listening:" >&2
    cat "$dir/serve.log" >&2
  fi
  fio --name=s --ioengine=nbd --uri="nbd+unix:///d?socket=$sock" --rw="$2" --bs=4k \
    --iodepth="$3" --size=512M --runtime="$secs" --time_based --ramp_time=1 --randrepeat=0 \
    --norandommap --output-format=json --output="$dir/fio.json" >/dev/null
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
  jq '.jobs[0] | (if .read.io_bytes > 0 then .read else .write end) | .iops | floor' \
    "$dir/fio.json"
}

configs=(base empty workers passthru cache-tier)
workloads=("randread 32" "randwrite 32" "randread 1" "randwrite 1")
echo "stack_ab: $rounds rounds x ${secs}s, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)," \
  "$(uname -r), $(stat -f -c %T "$dir")${loop:+ on $loop (direct-io loop over tmpfs)}"
: >"$results"
for r in $(seq "$rounds"); do
  # Rotate the order each round: no configuration always runs first or last.
  order=("${configs[@]:r%${#configs[@]}}" "${configs[@]:0:r%${#configs[@]}}")
  for w in "${workloads[@]}"; do
    read -r rw qd <<<"$w"
    for c in "${order[@]}"; do
      printf '%s\t%s-qd%s\t%s\n' "$c" "$rw" "$qd" "$(run "$c" "$rw" "$qd")" >>"$results"
    done
  done
  echo "round $r done"
done

median() {  # config workload -> median IOPS
  awk -F'\t' -v c="$1" -v w="$2" '$1==c && $2==w {print $3}' "$results" | sort -n |
    awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print int((v[NR/2]+v[NR/2+1])/2)}'
}
printf '\n%-22s' workload
for c in "${configs[@]}"; do printf '%12s' "$c"; done
printf '\n'
for w in "${workloads[@]}"; do
  read -r rw qd <<<"$w"
  key=$rw-qd$qd
  base=$(median base "$key")
  printf '%-22s' "$key IOPS"
  for c in "${configs[@]}"; do printf '%12s' "$(median "$c" "$key")"; done
  printf '\n%-22s' "  ratio to base"
  for c in "${configs[@]}"; do
    printf '%12s' "$(awk -v a="$(median "$c" "$key")" -v b="$base" 'BEGIN {printf "%.3f", a/b}')"
  done
  printf '\n'
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
