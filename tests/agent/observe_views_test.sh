#!/usr/bin/env bash
# The agent's views against real processes (docs/observe.md): `v2p agent` with /metrics and the
# web page, `v2p serve --agent` exporting vm1's disk, fio driving it through the NBD export.
#   metrics     promtool check metrics, histogram structure, 404 and oversized requests
#   prometheus  a real Prometheus server scrapes the agent; PromQL sees vm1's latency
#   top         `v2p top --once --json`, and the terminal UI in tmux (send-keys, capture-pane)
#   web         headless Chromium: the heat map shows vm1's regions (DOM and screenshot pixels)
# As root the image sits on a loop-device ext4 and the agent probes it (device layer, heat map);
# `web` needs that. Usage: observe_views_test.sh V2P MODE ARTIFACT_DIR
set -uo pipefail
source "$(dirname "$0")/../common/test_skip.sh"

v2p=$(readlink -f "$1")
mode=$2
artifacts=${3:-/tmp}
mkdir -p "$artifacts"
dir=$(mktemp -d /tmp/v2p-observe.XXXXXX)
pids=()
loop=""
cleanup() {
  tmux -L "v2p-top-$$" kill-server 2>/dev/null
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  if mountpoint -q "$dir/mnt" 2>/dev/null; then umount "$dir/mnt"; fi
  [[ -n $loop ]] && losetup -d "$loop" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$dir"/*.log; do [[ -f $f ]] && { echo "--- $f"; tail -20 "$f"; }; done
  exit 1
}
wait_for() { # FILE TEXT [TENTHS]
  for ((i = 0; i < ${3:-100}; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

require_tools fio curl jq python3
case $mode in
metrics) require_tools promtool ;;
prometheus) require_tools prometheus promtool ;;
top) require_tools tmux ;;
web)
  require_tools chromium losetup mkfs.ext4
  [[ $(id -u) -eq 0 ]] || skip_machine "the heat map needs the probe (root)"
  [[ -r /sys/kernel/btf/vmlinux ]] || skip_machine "the probe needs BTF"
  ;;
*) fail "unknown mode $mode" ;;
esac

probe=(--no-probe)
data=$dir
if [[ $(id -u) -eq 0 && -r /sys/kernel/btf/vmlinux ]] && command -v mkfs.ext4 >/dev/null; then
  # A device of its own: the heat map and the device layer show this test's I/O only.
  mkdir "$dir/mnt"
  truncate -s 256M "$dir/fs.img"
  loop=$(losetup --direct-io=on -f --show "$dir/fs.img") || fail "losetup"
  mkfs.ext4 -q "$loop" && mount "$loop" "$dir/mnt" || fail "mkfs/mount $loop"
  data=$dir/mnt
  probe=()
fi

port=$(free_port)
"$v2p" agent "${probe[@]}" --no-state --socket "$dir/agent.sock" --ingest-socket "$dir/ingest.sock" \
  --http "127.0.0.1:$port" >"$dir/agent.log" 2>&1 &
pids+=($!)
wait_for "$dir/agent.log" "v2p agent: ready" || fail "the agent did not start"
url=http://127.0.0.1:$port
fallocate -l 64M "$data/vm1.raw" || truncate -s 64M "$data/vm1.raw"
"$v2p" serve --image "$data/vm1.raw" --vm vm1 --vdisk disk0 --socket "$dir/vm1.sock" \
  --agent "$dir/ingest.sock" >"$dir/serve.log" 2>&1 &
pids+=($!)
wait_for "$dir/serve.log" "v2p serve: ready" || fail "v2p serve did not start"
# Writes everywhere first (the map, the heat map), then a mixed load while the views look.
fio --name=fill --ioengine=nbd --uri="nbd+unix:///disk0?socket=$dir/vm1.sock" --rw=write --bs=1M \
  --size=48M --iodepth=4 >"$dir/fill.log" 2>&1 || fail "fio fill"
fio --name=load --ioengine=nbd --uri="nbd+unix:///disk0?socket=$dir/vm1.sock" --rw=randrw \
  --bs=4k --size=48M --iodepth=8 --time_based --runtime=60 >"$dir/fio.log" 2>&1 &
fio_pid=$!
pids+=($fio_pid)
# Export figures reach the agent once a second.
for ((i = 0; i < 50; i++)); do
  curl -sf "$url/metrics" | grep -q 'v2p_vdisk_export_latency_seconds_count{vm="vm1",vdisk="disk0",op="read"} [1-9]' && break
  sleep 0.2
done

case $mode in
metrics)
  curl -sf -D "$dir/headers" "$url/metrics" >"$dir/metrics.txt" || fail "GET /metrics"
  grep -qi '^content-type: text/plain; version=0.0.4' "$dir/headers" || fail "content type: $(cat "$dir/headers")"
  promtool check metrics <"$dir/metrics.txt" 2>"$dir/promtool.log" || fail "promtool: $(cat "$dir/promtool.log")"
  for layer in export host; do
    grep -q "v2p_vdisk_${layer}_latency_seconds_count{vm=\"vm1\",vdisk=\"disk0\",op=\"read\"} [1-9]" \
      "$dir/metrics.txt" || fail "no $layer latency for vm1 reads"
  done
  if [[ ${#probe[@]} -eq 0 ]]; then
    grep -q 'v2p_device_latency_seconds_count{device="[0-9]*:[0-9]*",op="write"} [1-9]' \
      "$dir/metrics.txt" || fail "no device latency"
  fi
  # promtool does not check histograms: buckets cumulative, +Inf equal to _count.
  python3 - "$dir/metrics.txt" <<'PY' || fail "histogram structure"
import re, sys
series = {}
for line in open(sys.argv[1]):
    if line.startswith("#"): continue
    m = re.match(r'(\w+)_bucket\{(.*),le="([^"]+)"\} (\S+)', line)
    if m:
        series.setdefault((m[1], m[2]), []).append((m[3], float(m[4])))
        continue
    m = re.match(r'(\w+)_count\{(.*)\} (\S+)', line)
    if m:
        b = series[(m[1], m[2])]
        assert b[-1][0] == "+Inf", (m[1], m[2])
        assert float(m[3]) == b[-1][1], (m[1], m[2], "count != +Inf")
        values = [v for _, v in b]
        assert values == sorted(values), (m[1], m[2], "not cumulative")
assert series, "no histograms"
print(f"{len(series)} histograms checked")
PY
  [[ $(curl -s -o /dev/null -w '%{http_code}' "$url/no/such/page") == 404 ]] || fail "unknown path not 404"
  [[ $(curl -s -o /dev/null -w '%{http_code}' "$url/api/region?device=x&region=999") == 404 ]] ||
    fail "bad region not 404"
  long=$(head -c 20000 /dev/zero | tr '\0' a)
  code=$(curl -s -o /dev/null -w '%{http_code}' "$url/$long")
  [[ $code == 414 || $code == 400 || $code == 000 ]] || fail "a 20 kB request line got $code"
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data-binary @"$dir/metrics.txt" "$url/metrics")
  [[ $code == 413 || $code == 404 || $code == 405 ]] || fail "a large POST got $code"
  curl -sf "$url/metrics" >/dev/null || fail "the agent stopped answering after bad requests"
  # The bpftool contract: the agent's probe pins its counters with BTF-named fields.
  if [[ ${#probe[@]} -eq 0 ]] && command -v bpftool >/dev/null; then
    if grep -q "pinned at /sys/fs/bpf/v2p" "$dir/agent.log"; then
      bpftool -j map dump pinned /sys/fs/bpf/v2p/v2p_device_stats >"$dir/bpftool.json" ||
        fail "bpftool map dump"
      dev=$(stat -c '%t:%T' "$loop" | { IFS=: read -r ma mi; echo $(((16#$ma << 20) | 16#$mi)); })
      # Per-CPU arrays whose values name their key (docs/pfilter.md): sum our device's entries.
      jq -e --argjson dev "$dev" '[.[] | .formatted // . | .values[].value |
        select(.used == 1 and .dev == $dev) | .ios] | add > 0' "$dir/bpftool.json" >/dev/null ||
        fail "no named per-device counters for $loop: $(head -c 600 "$dir/bpftool.json")"
      bpftool -j map lookup pinned /sys/fs/bpf/v2p/v2p_slot_table key 0 0 0 0 >"$dir/slot.json"
      jq -e '(.formatted // .).value | has("vm") and has("vdisk") and has("voffset")' \
        "$dir/slot.json" >/dev/null || fail "the slot table has no named fields: $(cat "$dir/slot.json")"
    else
      echo "note: another probe owns /sys/fs/bpf/v2p; pins not checked"
    fi
  fi
  ;;
prometheus)
  pport=$(free_port)
  cat >"$dir/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: v2p
    static_configs:
      - targets: ['127.0.0.1:$port']
YML
  promtool check config "$dir/prometheus.yml" >/dev/null || fail "promtool check config"
  prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/tsdb" \
    --web.listen-address="127.0.0.1:$pport" >"$dir/prometheus.log" 2>&1 &
  pids+=($!)
  q() { curl -s "http://127.0.0.1:$pport/api/v1/query" --data-urlencode "query=$1"; }
  for ((i = 0; i < 150; i++)); do
    [[ $(q 'up{job="v2p"}' | jq -r '.data.result[0].value[1] // empty') == 1 ]] && break
    sleep 0.1
  done
  [[ $(q 'up{job="v2p"}' | jq -r '.data.result[0].value[1] // empty') == 1 ]] ||
    fail "Prometheus never scraped the agent: $(curl -s "http://127.0.0.1:$pport/api/v1/targets")"
  sleep 2.5 # a few scrapes, for rate()
  n=$(q 'v2p_vdisk_requests_total{vm="vm1",op="read"}' | jq -r '.data.result[0].value[1] // 0')
  [[ ${n%.*} -gt 0 ]] || fail "v2p_vdisk_requests_total is $n"
  p99=$(q 'histogram_quantile(0.99, sum by (le) (rate(v2p_vdisk_export_latency_seconds_bucket{vm="vm1"}[2s])))' |
    jq -r '.data.result[0].value[1] // "none"')
  python3 -c "import sys; v=float(sys.argv[1]); assert 0 < v < 10, v" "$p99" ||
    fail "export p99 from PromQL: $p99"
  echo "Prometheus: up, $n reads, export p99 $p99 s"
  ;;
top)
  "$v2p" top --agent "$dir/agent.sock" --once --json --interval 1 >"$dir/top.json" || fail "top --once"
  jq -e '.vdisks[] | select(.vm == "vm1") | .iops > 0 and .latency.export.p50_s > 0 and
    .latency.host.p50_s > 0' "$dir/top.json" >/dev/null || fail "top --once --json: $(cat "$dir/top.json")"
  sock="v2p-top-$$"
  tmux -L "$sock" new-session -d -x 200 -y 30 "$v2p top --agent $dir/agent.sock --interval 0.5" ||
    fail "tmux"
  for ((i = 0; i < 50; i++)); do
    tmux -L "$sock" capture-pane -p >"$dir/top.txt"
    awk '$1 == "vm1" && $3 > 0 { ok = 1 } END { exit !ok }' "$dir/top.txt" && break
    sleep 0.2
  done
  cp "$dir/top.txt" "$artifacts/v2p-top-vdisks.txt" 2>/dev/null
  grep -q "EXPORT p50/p99" "$dir/top.txt" || fail "no header: $(cat "$dir/top.txt")"
  awk '$1 == "vm1" && $3 > 0 { ok = 1 } END { exit !ok }' "$dir/top.txt" ||
    fail "no vm1 row with IOPS: $(cat "$dir/top.txt")"
  tmux -L "$sock" send-keys d
  for ((i = 0; i < 25; i++)); do
    tmux -L "$sock" capture-pane -p >"$dir/top-devices.txt"
    grep -q "LOADED BY" "$dir/top-devices.txt" && grep -q "vm1/disk0" "$dir/top-devices.txt" && break
    sleep 0.2
  done
  cp "$dir/top-devices.txt" "$artifacts/v2p-top-devices.txt" 2>/dev/null
  grep -q "LOADED BY" "$dir/top-devices.txt" && grep -q "vm1/disk0" "$dir/top-devices.txt" ||
    fail "device view: $(cat "$dir/top-devices.txt")"
  tmux -L "$sock" send-keys q
  for ((i = 0; i < 30; i++)); do
    tmux -L "$sock" has-session 2>/dev/null || break
    sleep 0.1
  done
  ! tmux -L "$sock" has-session 2>/dev/null || fail "q did not quit v2p top"
  echo "top: $(grep '^vm1' "$dir/top.txt")"
  ;;
web)
  for ((i = 0; i < 50; i++)); do
    curl -sf "$url/api/heat" | jq -e '.vms | index("vm1")' >/dev/null && break
    sleep 0.2
  done
  curl -sf "$url/api/heat" | jq -e '.vms | index("vm1")' >/dev/null || fail "no vm1 in /api/heat"
  export HOME=$dir/home XDG_CONFIG_HOME=$dir/home/.config
  mkdir -p "$HOME"
  chrome=(chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars
    --user-data-dir="$dir/profile" --window-size=1280,1000 --virtual-time-budget=4000)
  "${chrome[@]}" --dump-dom "$url/?select=first" >"$dir/dom.html" 2>"$dir/chromium.log" ||
    fail "chromium --dump-dom"
  grep -q 'data-state="ready"' "$dir/dom.html" || fail "page not ready: $(head -c 2000 "$dir/dom.html")"
  regions=$(grep -o '<li[^>]*data-vm="vm1"[^>]*>' "$dir/dom.html" | grep -o 'data-regions="[0-9]*"' |
    grep -o '[0-9]*')
  [[ ${regions:-0} -gt 0 ]] || fail "legend shows no vm1 region: $(grep -o '<ul id="legend".*</ul>' "$dir/dom.html")"
  grep -q 'class="owner"><td>vm1</td><td>disk0</td>' "$dir/dom.html" ||
    fail "the selected region does not name vm1/disk0"
  grep -q '<tr data-vm="vm1" data-layers="export host device"' "$dir/dom.html" ||
    fail "no latency row with all three layers: $(grep -o '<tbody>.*</tbody>' "$dir/dom.html" | head -c 1500)"
  shot=$artifacts/v2p-web-heatmap.png
  "${chrome[@]}" --screenshot="$shot" "$url/?select=first" >>"$dir/chromium.log" 2>&1 ||
    fail "chromium --screenshot"
  # vm1 is the first colour (#e6194b, red): the map must have red cells, at any brightness.
  python3 - "$shot" <<'PY' || fail "screenshot check"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, w = 8, b"", 0
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        assert depth == 8 and ctype in (2, 6), (depth, ctype)
        bpp = 3 if ctype == 2 else 4
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
raw = zlib.decompress(idat)
stride = w * bpp
prev = bytearray(stride)
red = 0
for y in range(h):
    f = raw[y * (stride + 1)]
    line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    for x in range(0, stride, bpp):
        r, g, bl = line[x], line[x + 1], line[x + 2]
        if r >= 50 and r > 3 * g and r > 2 * bl:
            red += 1
    prev = line
print(f"screenshot {w}x{h}: {red} vm1-coloured pixels")
assert red >= 300, "fewer than one region's worth of vm1 pixels"
PY
  echo "web: vm1 owns $regions regions; screenshot $shot"
  ;;
esac
kill "$fio_pid" 2>/dev/null
echo "PASS ($mode)"
