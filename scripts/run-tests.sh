#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to every test: install, build (plain and with
# ASan+UBSan), run the whole CTest suite in both, build the samples out of tree, run the fuzzers.
# A red step does not stop the run: every step runs, then a summary names what failed, counts
# each CTest half and lists every skipped test with its reason. Exit 1 if any step failed.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
jobs=${V2P_JOBS:-$(nproc)}
started=$SECONDS
"$top/scripts/setup.sh"
# ccache keyed on paths relative to the checkout, so a fresh clone (CI) reuses this machine's cache.
export CCACHE_BASEDIR=$top CCACHE_NOHASHDIR=1
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

failed_steps=()
summary=()
# step NAME COMMAND...: runs COMMAND with errexit in a subshell and records whether it passed.
step() {
  local name=$1 rc=0
  shift
  echo "== $name"
  set +e
  (
    set -e
    "$@"
  )
  rc=$?
  set -e
  if ((rc != 0)); then
    echo "== $name: FAILED (exit $rc)" >&2
    failed_steps+=("$name")
  fi
  summary+=("$(printf '%-8s %s' "$( ((rc == 0)) && echo passed || echo FAILED)" "$name")")
}

run_suite() {  # run_suite BUILD_DIR CMAKE_ARGS...
  local dir=$1
  shift
  cmake -S "$top" -B "$dir" -G Ninja "${launcher[@]}" "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  # One at a time: timing-sensitive tests (chain joins, crash loops) share two CPUs. Tests that
  # load eBPF programs also hold RESOURCE_LOCK v2p_bpf, so `ctest -j 2` by hand is safe too.
  (cd "$dir" && ctest --output-on-failure -j 1 --timeout 600) | tee "$dir/ctest-output.log"
}

samples() {
  local sdk=$top/build/sdk-install
  rm -rf "$sdk"
  cmake --install "$top/build" --prefix "$sdk" >/dev/null
  for sample in "$top"/samples/*/; do
    name=$(basename "$sample")
    cmake -S "$sample" -B "$top/build/samples/$name" -G Ninja -DCMAKE_PREFIX_PATH="$sdk" >/dev/null
    cmake --build "$top/build/samples/$name"
  done
  # A snapshot the SDK did not write is refused with a sentence, not a crash.
  if LD_LIBRARY_PATH=$sdk/lib "$top/build/samples/map-report/v2p-map-report" "$top/README.md"; then
    echo "map-report accepted a file that is not a snapshot" >&2
    exit 1
  fi
}

step "plain build and CTest" run_suite "$top/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
step "samples, built out of tree against the installed SDK" samples
step "sample policies, loaded into v2p serve while qemu-io writes" \
  "$top/scripts/smoke-policies.sh" "$top/build/cli/v2p" "$top/build/samples"
ASAN_OPTIONS=detect_leaks=1 step "sanitizer build (ASan+UBSan) and CTest" run_suite \
  "$top/build-asan" -DCMAKE_BUILD_TYPE=Debug -DV2P_SANITIZE=ON -DV2P_BUILD_BENCH=OFF
step "fuzzers (libFuzzer, ${V2P_FUZZ_SECONDS:-30}s each)" \
  "$top/scripts/run-fuzzers.sh" "${V2P_FUZZ_SECONDS:-30}"
step "the other build configurations (build only)" "$top/scripts/build-configs.sh"
step "the Debian packages, built, installed in a fresh root and used" "$top/scripts/build-deb.sh"

echo
echo "== summary ($(((SECONDS - started) / 60)) min)"
printf '%s\n' "${summary[@]}"
for half in build build-asan; do
  "$top/scripts/ctest-summary.sh" "$top/$half" || true
done
if ((${#failed_steps[@]})); then
  echo "run-tests.sh: ${#failed_steps[@]} step(s) failed: ${failed_steps[*]}" >&2
  exit 1
fi
echo "run-tests.sh: every step passed"
