#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a running `v2p demo`: install, build, run.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/setup.sh"
# ccache keyed on paths relative to the checkout, so a fresh clone (CI) reuses this machine's cache.
export CCACHE_BASEDIR=$top CCACHE_NOHASHDIR=1
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
cmake -S "$top" -B "$top/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" >/dev/null
cmake --build "$top/build" --target v2p
exec "$top/build/cli/v2p" demo "$@"
