#!/usr/bin/env bash
# Builds, without running tests, the configurations scripts/run-tests.sh does not already build,
# so a warning that only one compiler or optimisation level shows (-Werror) fails CI:
#   build-configs.sh [NAME…]   default: clang-debug (with the tests and benchmarks), gcc-release
#                              and clang-release (the product only); each in build-NAME/.
# Why these: g++ Debug is the sanitizer build and g++ RelWithDebInfo the tested one already; the
# test code meets clang once (clang-debug), and each compiler's optimiser sees the product once.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
jobs=${V2P_JOBS:-$(nproc)}
# A clean clone elsewhere (CI) still hits the cache this machine has built up.
export CCACHE_BASEDIR=$top CCACHE_NOHASHDIR=1
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

configs=("$@")
((${#configs[@]})) || configs=(clang-debug gcc-release clang-release)
for name in "${configs[@]}"; do
  case ${name%%-*} in
    gcc) cc=gcc cxx=g++ ;;
    clang) cc=clang cxx=clang++ ;;
    *)
      echo "$0: unknown compiler in '$name' (gcc-… or clang-…)" >&2
      exit 2
      ;;
  esac
  case ${name#*-} in
    debug) type=Debug ;;
    release) type=Release ;;
    relwithdebinfo) type=RelWithDebInfo ;;
    *)
      echo "$0: unknown build type in '$name' (…-debug, …-release or …-relwithdebinfo)" >&2
      exit 2
      ;;
  esac
  extra=()
  [[ $type == Debug ]] || extra=(-DV2P_BUILD_TESTS=OFF -DV2P_BUILD_BENCH=OFF)
  echo "== build $name ($cxx, $type${extra:+, product only})"
  cmake -S "$top" -B "$top/build-$name" -G Ninja -DCMAKE_BUILD_TYPE="$type" \
    -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" "${launcher[@]}" "${extra[@]}" >/dev/null
  cmake --build "$top/build-$name" -j "$jobs"
done
