#!/usr/bin/env bash
# gen-manpages.sh V2P_BINARY OUT_DIR VERSION: one man page per command, v2p.1 and
# v2p-<sub>[-<subsub>].1, written by help2man from `v2p … --help`. The subcommands are read from
# the binary's own help, recursively, so a new subcommand gets its page with no list to edit.
set -euo pipefail
[[ $# -eq 3 ]] || {
  echo "usage: $0 V2P_BINARY OUT_DIR VERSION" >&2
  exit 2
}
v2p=$(realpath "$1")
out=$2
version=$3
command -v help2man >/dev/null || {
  echo "$0: help2man is missing (apt-get install help2man)" >&2
  exit 1
}
mkdir -p "$out"
rm -f "$out"/*.1
wrappers=$(mktemp -d)
trap 'rm -rf "$wrappers"' EXIT

# Prints "NAME<TAB>SUMMARY" for each subcommand listed in `v2p WORDS… --help` (CLI11's format:
# a "Subcommands:" heading, then two-space-indented rows, then a blank line).
subcommands() {
  "$v2p" "$@" --help | awk '
    /^[A-Za-z]*[Ss]ubcommands:$/ { on = 1; next }
    on && /^$/ { on = 0 }
    on && /^  [^ ]/ { name = $1; $1 = ""; sub(/^ +/, ""); print name "\t" $0 }'
}

# page WORDS… SUMMARY: the page for `v2p WORDS…`, then its own subcommands' pages.
page() {
  local summary=${*: -1}
  local words=("${@:1:$#-1}")
  local name
  name=$(IFS=-; echo "v2p${words[*]:+-${words[*]}}")
  # help2man names the page after the program it runs: a wrapper called v2p-demo runs `v2p demo`.
  printf '#!/bin/sh\nexec "%s" %s "$@"\n' "$v2p" "${words[*]}" >"$wrappers/$name"
  chmod +x "$wrappers/$name"
  local see_also="$wrappers/$name.h2m"
  local children
  children=$(subcommands "${words[@]}")
  {
    echo "[SEE ALSO]"
    if [[ -n $children ]]; then
      cut -f1 <<<"$children" | sed "s/^/.BR $name-/; s/\$/ (1)/"
    else
      echo ".BR v2p (1)"
    fi
  } >"$see_also"
  help2man --no-info --no-discard-stderr --version-string="$version" --name="$summary" \
    --section=1 --include="$see_also" --output="$out/$name.1" "$wrappers/$name"
  [[ -n $children ]] || return 0
  while IFS=$'\t' read -r sub sub_summary; do
    page "${words[@]}" "$sub" "$sub_summary"
  done <<<"$children"
}

page "live virtual-to-physical block maps for KVM/QEMU"
