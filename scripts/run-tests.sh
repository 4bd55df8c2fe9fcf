#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to every test: install, build (plain and with
# ASan+UBSan), run the whole CTest suite in both, build the samples out of tree, run the fuzzers.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
jobs=${V2P_JOBS:-$(nproc)}
"$top/scripts/setup.sh"
# ccache keyed on paths relative to the checkout, so a fresh clone (CI) reuses this machine's cache.
export CCACHE_BASEDIR=$top CCACHE_NOHASHDIR=1
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

run_suite() {  # run_suite BUILD_DIR CMAKE_ARGS...
  local dir=$1
  shift
  cmake -S "$top" -B "$dir" -G Ninja "${launcher[@]}" "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  # One at a time: timing-sensitive tests (chain joins, crash loops) share two CPUs. Tests that
  # load eBPF programs also hold RESOURCE_LOCK v2p_bpf, so `ctest -j 2` by hand is safe too.
  (cd "$dir" && ctest --output-on-failure -j 1 --timeout 600)
}

echo "== plain build"
run_suite "$top/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
echo "== samples, built out of tree against the installed SDK"
sdk=$top/build/sdk-install
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
echo "== sample policies, loaded into v2p serve while qemu-io writes"
"$top/scripts/smoke-policies.sh" "$top/build/cli/v2p" "$top/build/samples"

echo "== sanitizer build (ASan+UBSan)"
ASAN_OPTIONS=detect_leaks=1 run_suite "$top/build-asan" -DCMAKE_BUILD_TYPE=Debug -DV2P_SANITIZE=ON \
  -DV2P_BUILD_BENCH=OFF
echo "== fuzzers (libFuzzer, ${V2P_FUZZ_SECONDS:-30}s each)"
"$top/scripts/run-fuzzers.sh" "${V2P_FUZZ_SECONDS:-30}"

echo "== the other build configurations (build only), then the Debian packages, installed and used"
"$top/scripts/build-configs.sh" && "$top/scripts/build-deb.sh"
