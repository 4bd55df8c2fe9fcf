#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a running `v2p demo`: install, build, run.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/setup.sh"
cmake -S "$top" -B "$top/build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$top/build" --target v2p
exec "$top/build/cli/v2p" demo "$@"
