#!/usr/bin/env bash
# Tagging on vs off, alternated in pairs on the same image so drift hits both alike: fio nbd 4k
# randread QD32 against `v2p serve` and `v2p serve --no-tagging`. Prints each pair and the medians.
#   bench/vfilter/tag_ab.sh DIR [PAIRS] [SECONDS]     (DIR on a real file system; O_DIRECT)
set -euo pipefail
dir=${1:?usage: tag_ab.sh DIR [PAIRS] [SECONDS]}
pairs=${2:-7}
secs=${3:-5}
v2p=${V2P:-$(cd "$(dirname "$0")/../.." && pwd)/build/cli/v2p}
mkdir -p "$dir"
img=$dir/ab.raw
sock=$dir/ab.sock
fio --name=fill --filename="$img" --size=512M --rw=write --bs=1M --direct=1 >/dev/null
pid=""
trap '[[ -n $pid ]] && kill $pid 2>/dev/null; rm -f "$img" "$sock" "$dir/ab.json"' EXIT
run() {  # run EXTRA_FLAG -> IOPS
  "$v2p" serve --image "$img" --vm ab --vdisk d --socket "$sock" $1 >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.05; done
  fio --name=ab --ioengine=nbd --uri="nbd+unix:///d?socket=$sock" --rw=randread --bs=4k \
    --iodepth=32 --runtime="$secs" --time_based --ramp_time=1 --output-format=json \
    --output="$dir/ab.json" >/dev/null
  jq '.jobs[0].read.iops | floor' "$dir/ab.json"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
}
on=(); off=()
for i in $(seq "$pairs"); do
  if (( i % 2 )); then a=$(run ""); b=$(run --no-tagging); else b=$(run --no-tagging); a=$(run ""); fi
  on+=("$a"); off+=("$b")
  echo "pair $i: tag on $a IOPS, tag off $b IOPS"
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
m_on=$(median "${on[@]}"); m_off=$(median "${off[@]}")
echo "median tag on $m_on, tag off $m_off, on/off $(awk -v a="$m_on" -v b="$m_off" 'BEGIN{printf "%.3f", a/b}')"
