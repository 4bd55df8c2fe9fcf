#!/usr/bin/env bash
# version_test.sh V2P PROJECT_VERSION CHANGELOG: `v2p --version` prints the CMake project version,
# and debian/changelog's upstream version is that same version (the .deb and the binary agree).
set -euo pipefail
v2p=$1 want=$2 changelog=$3
got=$("$v2p" --version)
if [[ $got != "v2p $want" ]]; then
  echo "v2p --version printed '$got', expected 'v2p $want' (CMake's project version)" >&2
  exit 1
fi
# First line: "v2p (VERSION[-REVISION]) DIST; urgency=…"; the upstream part drops any revision.
deb=$(sed -n '1s/^v2p (\([^)]*\)).*/\1/p' "$changelog")
upstream=${deb%-*}
if [[ $upstream != "$want" ]]; then
  echo "debian/changelog says '$deb' (upstream '$upstream') but CMakeLists.txt's project version" \
    "is '$want': add a changelog entry (dch -v $want) or fix the version" >&2
  exit 1
fi
echo "v2p --version and debian/changelog both say $want"
