#!/usr/bin/env bash
# `systemd-analyze verify` on the shipped units, with ExecStart pointed at the built binary (the
# installed path does not exist in a build tree). Any warning fails the test, not only errors:
# systemd merely warns about unknown keys and bad values, then ignores them.
# Usage: systemd_units_test.sh V2P_BINARY UNIT_DIR. Exit 77 = skipped.
set -euo pipefail
v2p=$1
units=$2
source "$(dirname "$0")/../common/test_skip.sh"
require_tools systemd-analyze
work=$(mktemp -d /tmp/v2p-units.XXXXXX)
trap 'rm -rf "$work"' EXIT
sed "s#/usr/bin/v2p#$v2p#g" "$units/v2p-agent.service" >"$work/v2p-agent.service"
sed "s#/usr/bin/v2p#$v2p#g" "$units/v2p-serve@.service" >"$work/v2p-serve@vm1.service"
cd "$work"
out=$(systemd-analyze verify v2p-agent.service v2p-serve@vm1.service 2>&1) || {
  echo "$out"
  exit 1
}
if [[ -n $out ]]; then
  echo "systemd-analyze verify warned:"
  echo "$out"
  exit 1
fi
# The agent unit is Type=notify with a watchdog; the template runs the export against the agent.
grep -q '^Type=notify$' v2p-agent.service
grep -q '^WatchdogSec=' v2p-agent.service
grep -q -- '--agent /run/v2p/ingest.sock' v2p-serve@vm1.service
echo "units verified"
