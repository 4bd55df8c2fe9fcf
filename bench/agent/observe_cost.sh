#!/usr/bin/env bash
# What the observation path costs the data path (docs/observe.md): fio 4k random reads at QD32
# through `v2p serve --agent` on a loop-device ext4, the agent probing it, in two configs run
# interleaved in one invocation:
#   off  agent --http off, serve --no-export-latency, nobody scrapes
#   on   agent with /metrics and the web page, serve timing every request, a scraper fetching
#        /metrics, /api/heat and /api/observation every second
# Prints each run's IOPS, the medians and on/off. Root. Usage:
#   bench/agent/observe_cost.sh BUILD/cli/v2p [ROUNDS=5] [SECONDS=5] [RW=randread]
set -euo pipefail
v2p=$(readlink -f "$1")
rounds=${2:-5}
secs=${3:-5}
rw=${4:-randread}
[[ $(id -u) -eq 0 ]] || { echo "observe_cost.sh: needs root (loop device, probe)" >&2; exit 1; }
dir=$(mktemp -d /tmp/v2p-observe-cost.XXXXXX)
pids=()
loop=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  mountpoint -q "$dir/mnt" && umount "$dir/mnt"
  [[ -n $loop ]] && losetup -d "$loop"
  rm -rf "$dir"
}
trap cleanup EXIT
wait_for() { for ((i = 0; i < 100; i++)); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }

mkdir "$dir/mnt"
truncate -s 1G "$dir/fs.img"
loop=$(losetup --direct-io=on -f --show "$dir/fs.img")
mkfs.ext4 -q "$loop"
mount "$loop" "$dir/mnt"
truncate -s 256M "$dir/mnt/vm1.raw"
port=$((20000 + RANDOM % 20000))

run() { # CONFIG -> IOPS on stdout
  local cfg=$1 http=(--http off) serve=(--no-export-latency) scraper=""
  if [[ $cfg == on ]]; then http=(--http "127.0.0.1:$port"); serve=(); fi
  rm -f "$dir"/*.sock
  "$v2p" agent --no-state --socket "$dir/agent.sock" --ingest-socket "$dir/ingest.sock" \
    "${http[@]}" >"$dir/agent.log" 2>&1 &
  local agent=$!
  wait_for "$dir/agent.log" "v2p agent: ready"
  "$v2p" serve --image "$dir/mnt/vm1.raw" --vm vm1 --vdisk disk0 --socket "$dir/vm1.sock" \
    --agent "$dir/ingest.sock" "${serve[@]}" >"$dir/serve.log" 2>&1 &
  local serve_pid=$!
  wait_for "$dir/serve.log" "v2p serve: ready"
  wait_for "$dir/agent.log" "probe attached"
  if [[ $cfg == on ]]; then
    (while :; do
      for p in metrics api/heat api/observation; do curl -s -o /dev/null "http://127.0.0.1:$port/$p"; done
      sleep 1
    done) &
    scraper=$!
  fi
  fio --name=cost --ioengine=nbd --uri="nbd+unix:///disk0?socket=$dir/vm1.sock" --rw="$rw" \
    --bs=4k --iodepth=32 --size=256M --time_based --runtime="$secs" --output-format=json \
    >"$dir/fio.json"
  [[ -n $scraper ]] && kill "$scraper" && wait "$scraper" 2>/dev/null || true
  kill "$serve_pid" "$agent"
  wait "$serve_pid" "$agent" 2>/dev/null || true
  sed -n '/^{/,$p' "$dir/fio.json" | jq "[.jobs[0].read.iops, .jobs[0].write.iops] | add | floor"
}

# Fill once, so reads reach the device.
"$v2p" serve --image "$dir/mnt/vm1.raw" --vdisk disk0 --socket "$dir/fill.sock" >"$dir/fill.log" 2>&1 &
fill=$!
wait_for "$dir/fill.log" "v2p serve: ready"
fio --name=fill --ioengine=nbd --uri="nbd+unix:///disk0?socket=$dir/fill.sock" --rw=write --bs=1M \
  --size=256M --iodepth=4 >/dev/null
kill "$fill"; wait "$fill" 2>/dev/null || true

declare -A iops=([off]="" [on]="")
for ((r = 1; r <= rounds; r++)); do
  # Alternate which goes first, so a trend in the machine's load hits both alike.
  order=(off on); ((r % 2 == 0)) && order=(on off)
  for cfg in "${order[@]}"; do
    n=$(run "$cfg")
    iops[$cfg]+="$n "
    echo "round $r $cfg: $n IOPS (load $(cut -d' ' -f1 /proc/loadavg))"
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
off=$(echo "${iops[off]}" | median)
on=$(echo "${iops[on]}" | median)
echo "fio $rw 4k QD32, ${secs}s x $rounds rounds: off median $off, on median $on IOPS, on/off $(
  awk -v a="$on" -v b="$off" 'BEGIN {printf "%.3f", a / b}') (load average $(cut -d' ' -f1-3 /proc/loadavg))"
