#!/usr/bin/env bash
# completion_test.sh V2P COMPLETION_FILE: the bash completion offers the binary's subcommands,
# a subcommand's options, nested subcommands, and leaves arguments to file-name completion.
set -euo pipefail
v2p=$(realpath "$1")
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
ln -s "$v2p" "$bin/v2p"
export PATH=$bin:$PATH
# shellcheck source=/dev/null
source "$2"

complete_line() {  # complete_line WORDS…: the candidates for the last word
  COMP_WORDS=("$@")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  _v2p
  printf '%s\n' "${COMPREPLY[@]}"
}
expect() {  # expect WANTED CANDIDATES
  grep -qx -- "$1" <<<"$2" || {
    echo "completion lacks '$1'; offered: $(tr '\n' ' ' <<<"$2")" >&2
    exit 1
  }
}

expect demo "$(complete_line v2p de)"
expect --fs "$(complete_line v2p demo --f)"
expect --guest-dir "$(complete_line v2p demo --fs ext4 --g)"
expect --version "$(complete_line v2p --v)"
got=$(complete_line v2p demo "")
[[ -z $got ]] || {
  echo "an argument of 'v2p demo' should fall back to file names, got: $got" >&2
  exit 1
}
# Every top-level subcommand, and one nested level where the binary has one.
all=$(complete_line v2p "")
for sub in $(v2p --help | awk '/^[A-Za-z]*[Ss]ubcommands:$/ { on = 1; next } on && /^$/ { on = 0 }
                               on && /^  [^ ]/ { print $1 }'); do
  expect "$sub" "$all"
  nested=$(v2p "$sub" --help | awk '/^[A-Za-z]*[Ss]ubcommands:$/ { on = 1; next }
                                    on && /^$/ { on = 0 } on && /^  [^ ]/ { print $1; exit }')
  [[ -z $nested ]] || expect "$nested" "$(complete_line v2p "$sub" "${nested:0:2}")"
done
echo "completion offers subcommands, options and nested subcommands"
