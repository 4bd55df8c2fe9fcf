#!/usr/bin/env bash
# The filter stack's cost as CPU time per request of the `v2p serve` process (user + system,
# from /proc/PID/stat), which a busy machine disturbs far less than IOPS: a fixed number of fio
# nbd 4k requests per run, configurations interleaved round by round in a rotating order,
# medians, ratio to "base". Same configurations and environment as stack_ab.sh.
#
#   bench/vfilter/stack_cpu.sh DIR|fast [ROUNDS] [REQUESTS]
set -euo pipefail
dir=${1:?usage: stack_cpu.sh DIR|fast [ROUNDS] [REQUESTS]}
rounds=${2:-5}
ios=${3:-40000}
top=$(cd "$(dirname "$0")/../.." && pwd)
v2p=${V2P:-$top/build/cli/v2p}
base_v2p=${BASE_V2P:-$v2p}
passthru=${PASSTHRU:-$top/build/tests/vfilter/libtest_passthru_filter.so}
for f in "$v2p" "$base_v2p" "$passthru"; do
  [[ -e $f ]] || { echo "missing $f (build it first)" >&2; exit 1; }
done
command -v fio >/dev/null || { echo "fio is required" >&2; exit 1; }
pid="" loop="" shm="" img="" sock="" results=""
cleanup() {
  [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -f "$img" "$sock" "$dir"/cache.bin "$dir"/fast.tier* "$dir"/serve.log
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
  [[ $(id -u) == 0 ]] || { echo "the fast regime needs root (losetup, mount)" >&2; exit 1; }
  shm=$(mktemp /dev/shm/v2p-stack-cpu.XXXXXX)
  truncate -s 1200M "$shm"
  loop=$(losetup --direct-io=on --find --show "$shm")
  mkfs.ext4 -q -F "$loop"
  dir=$(mktemp -d /tmp/v2p-stack-cpu.XXXXXX)
  mount "$loop" "$dir"
fi
mkdir -p "$dir"
[[ $(stat -f -c %T "$dir") != tmpfs ]] || { echo "$dir is on tmpfs" >&2; exit 1; }
img=$dir/stack.raw
sock=$dir/stack.sock
results=$(mktemp /tmp/v2p-stack-cpu-results.XXXXXX)
fio --name=fill --filename="$img" --size=512M --rw=write --bs=1M --direct=1 >/dev/null
tick=$(getconf CLK_TCK)

flags() {
  case $1 in
    base | empty) ;;
    workers) echo --file-backend ;;
    passthru) echo --filter "$passthru" ;;
    cache-tier)
      echo --cache "$dir/cache.bin" --cache-size 256M --tier-fast "$dir/fast.tier" \
        --tier-fast-size 256M --tier-extent 1M ;;
  esac
}
run() {  # configuration rw qd -> microseconds of serve CPU per request
  rm -f "$dir"/cache.bin "$dir"/fast.tier* "$sock"
  local bin=$v2p
  [[ $1 != base ]] || bin=$base_v2p
  # shellcheck disable=SC2046
  "$bin" serve --image "$img" --vm bench --vdisk d --socket "$sock" $(flags "$1") \
    >"$dir/serve.log" 2>&1 &
  pid=$!
  for _ in $(seq 1200); do [[ -S $sock ]] && break; sleep 0.05; done
  local before after
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  fio --name=s --ioengine=nbd --uri="nbd+unix:///d?socket=$sock" --rw="$2" --bs=4k \
    --iodepth="$3" --size=512M --number_ios="$ios" --randrepeat=0 --norandommap >/dev/null
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""
  awk -v a="$after" -v b="$before" -v t="$tick" -v n="$ios" \
    'BEGIN {printf "%.2f", (a - b) / t * 1e6 / n}'
}

configs=(${CONFIGS:-base empty workers passthru cache-tier})
workloads=("randread 32" "randwrite 32" "randread 1")
echo "stack_cpu: $rounds rounds x $ios requests, $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)," \
  "$(uname -r), $(stat -f -c %T "$dir")${loop:+ on $loop (direct-io loop over tmpfs)}"
for r in $(seq "$rounds"); do
  order=("${configs[@]:r%${#configs[@]}}" "${configs[@]:0:r%${#configs[@]}}")
  for w in "${workloads[@]}"; do
    read -r rw qd <<<"$w"
    for c in "${order[@]}"; do
      printf '%s\t%s-qd%s\t%s\n' "$c" "$rw" "$qd" "$(run "$c" "$rw" "$qd")" >>"$results"
    done
  done
  echo "round $r done"
done
median() {
  awk -F'\t' -v c="$1" -v w="$2" '$1==c && $2==w {print $3}' "$results" | sort -g |
    awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else printf "%.2f\n", (v[NR/2]+v[NR/2+1])/2}'
}
printf '\n%-24s' "us CPU per request"
for c in "${configs[@]}"; do printf '%12s' "$c"; done
printf '\n'
for w in "${workloads[@]}"; do
  read -r rw qd <<<"$w"
  key=$rw-qd$qd
  base=$(median "${configs[0]}" "$key")
  printf '%-24s' "$key"
  for c in "${configs[@]}"; do printf '%12s' "$(median "$c" "$key")"; done
  printf '\n%-24s' "  ratio to ${configs[0]}"
  for c in "${configs[@]}"; do
    printf '%12s' "$(awk -v a="$(median "$c" "$key")" -v b="$base" 'BEGIN {printf "%.3f", a/b}')"
  done
  printf '\n'
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
