#!/usr/bin/env bash
# manpages_test.sh V2P MAN_DIR: every subcommand the binary lists (recursively) has its page,
# no page is left over from a removed one, and each page documents every option of its --help.
set -euo pipefail
v2p=$1 man=$2
if [[ -z $man || ! -d $man ]]; then
  echo "usage: $0 V2P MAN_DIR (the folder of the built pages; got '$man')" >&2
  exit 2
fi
fail=0
expected=()
check() {  # check WORDS…: the page of `v2p WORDS…`, then its subcommands'
  local name
  name=$(IFS=-; echo "v2p${*:+-$*}")
  expected+=("$name.1")
  local page=$man/$name.1
  if [[ ! -s $page ]]; then
    echo "missing man page $page for 'v2p $*'" >&2
    fail=1
  else
    # help2man escapes '-' as '\-' in roff; compare against the unescaped text.
    local text
    text=$(sed 's/\\-/-/g; s/\\f[BIRP]//g' "$page")
    local opt
    for opt in $("$v2p" "$@" --help | awk '/^ +-/ { n = split($1, a, ","); for (i = 1; i <= n; i++) print a[i] }'); do
      if [[ $text != *"$opt"* ]]; then
        echo "$page does not document $opt (regenerate: it drifted from --help)" >&2
        fail=1
      fi
    done
  fi
  local sub
  for sub in $("$v2p" "$@" --help | awk '/^[A-Za-z]*[Ss]ubcommands:$/ { on = 1; next }
                                          on && /^$/ { on = 0 }
                                          on && /^  [^ ]/ { print $1 }'); do
    check "$@" "$sub"
  done
}
check
for page in "$man"/*.1; do
  [[ " ${expected[*]} " == *" $(basename "$page") "* ]] || {
    echo "stale man page $page: no such subcommand any more" >&2
    fail=1
  }
done
((fail == 0)) && echo "${#expected[@]} man pages, one per command, each with its options"
exit $fail
