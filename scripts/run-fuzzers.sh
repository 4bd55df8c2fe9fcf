#!/usr/bin/env bash
# Builds every libFuzzer harness with clang and runs each for a bounded time on its seed corpus
# (tests/**/corpus/<name>/). A crash, leak or sanitizer report fails the run.
# Usage: run-fuzzers.sh [SECONDS_EACH]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-30}
build=$top/build-fuzz
# ccache keyed on paths relative to the checkout, so a fresh clone (CI) reuses this machine's cache.
export CCACHE_BASEDIR=$top CCACHE_NOHASHDIR=1
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
CC=clang CXX=clang++ cmake -S "$top" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DV2P_BUILD_FUZZ=ON -DV2P_BUILD_BENCH=OFF "${launcher[@]}" >/dev/null
cmake --build "$build" --target fuzzers
while read -r name; do
  [[ -n $name ]] || continue
  exe=$(find "$build" -type f -name "$name" -perm -u+x | head -1)
  work=$(mktemp -d "/tmp/v2p-fuzz-$name.XXXXXX")
  seeds=$(find "$top" -path "*/corpus/$name" -type d -not -path "*/build*" | head -1)
  echo "== fuzz $name for ${seconds}s"
  status=0
  "$exe" -max_total_time="$seconds" -print_final_stats=1 "$work" ${seeds:+"$seeds"} \
    >"$work.log" 2>&1 || status=$?
  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|==.*ERROR|SUMMARY)" "$work.log" || true
  [[ $status -eq 0 ]] || tail -40 "$work.log" >&2
  rm -rf "$work" "$work.log"
  if [[ $status -ne 0 ]]; then
    echo "fuzzer $name failed (exit $status)" >&2
    exit 1
  fi
done <"$build/fuzzers.txt"
