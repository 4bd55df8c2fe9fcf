#!/usr/bin/env bash
# Loads every policy and filter sample built out of tree (SAMPLES_DIR/<name>/lib*.so) into
# `v2p serve`, writes through it with qemu-io and stops it: a sample that does not load, refuses
# its documented arguments, crashes the server or prints nothing it promises fails the run.
#   scripts/smoke-policies.sh build/cli/v2p build/samples
set -euo pipefail
v2p=$1
samples=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
truncate -s 64M "$work/disk0.raw"

# The arguments each sample is run with, and a line its output must contain.
expect_for() {
  case $1 in
    passthru-policy) echo "report_every=1|policy passthru: saw " ;;
    heat-reporter) echo "every=1|policy heat-reporter: heat vm1: total " ;;
    no-swap-cache) echo "vdisk=swap|policy no-swap-cache loaded" ;;
    passthru-filter) echo "|filter passthru: vdisk disk0: 1 reads, 1 writes" ;;
    qos-filter) echo "iops=1000|filter qos: vm vm1: " ;;
    mirror-filter) echo "mirror=$work/{vdisk}.mirror|mirror $work/disk0.mirror in sync" ;;
    *) echo "|loaded from" ;;
  esac
}

found=0
for so in "$samples"/*/lib*.so; do
  [ -e "$so" ] || continue
  name=$(basename "$(dirname "$so")")
  spec=$(expect_for "$name")
  arg=${spec%%|*}
  want=${spec#*|}
  log=$work/$name.log
  sock=$work/$name.sock
  # Filter samples (*-filter) load with --filter; the rest are policies.
  kind=policy
  case $name in *-filter) kind=filter ;; esac
  cmd=("$v2p" serve --image "$work/disk0.raw" --vm vm1 --vdisk disk0 --socket "$sock"
       "--$kind" "$so")
  [ "$kind" = policy ] && cmd+=(--policy-tick-ms 50)
  [ -n "$arg" ] && cmd+=("--$kind-arg" "$arg")
  "${cmd[@]}" >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    grep -q "v2p serve: ready" "$log" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! grep -q "v2p serve: ready" "$log"; then
    echo "smoke: $name did not load:" >&2
    cat "$log" >&2
    exit 1
  fi
  qemu-io -f raw -c "write -P 0x5a 0 1M" -c "read -P 0x5a 0 1M" "nbd+unix:///disk0?socket=$sock" \
    >/dev/null
  for _ in $(seq 50); do
    grep -qF "$want" "$log" && break
    sleep 0.1
  done
  kill -TERM "$pid"
  rc=0
  wait "$pid" || rc=$?
  lost=0
  [ "$kind" = policy ] && ! grep -q "1 live, 0 unloaded" "$log" && lost=1
  if [ "$rc" -ne 0 ] || ! grep -qF "$want" "$log" || [ "$lost" -ne 0 ]; then
    echo "smoke: $name (exit $rc) did not print '$want' or lost its policy:" >&2
    cat "$log" >&2
    exit 1
  fi
  echo "smoke: $name ok ($(grep -cF "$want" "$log") x '$want')"
  found=$((found + 1))
done
if [ "$found" -eq 0 ]; then
  echo "smoke: no policy samples under $samples" >&2
  exit 1
fi
