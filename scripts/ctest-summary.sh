#!/usr/bin/env bash
# The outcome of the last `ctest` run in BUILD_DIR in a few lines: counts, then every failed
# and every skipped test with the reason it printed (GoogleTest's "Skipped" message, or a
# script's "skipped: ..." line). scripts/run-tests.sh calls it for both halves.
#   ctest-summary.sh BUILD_DIR
set -euo pipefail
dir=${1:?usage: ctest-summary.sh BUILD_DIR}
out=$dir/ctest-output.log
log=$dir/Testing/Temporary/LastTest.log
name=$(basename "$dir")
if [[ ! -s $out ]]; then
  echo "$name: CTest did not run (the build failed?)"
  exit 1
fi
total=$(sed -nE 's/.* tests failed out of ([0-9]+)$/\1/p' "$out" | tail -1)
failed=$(sed -nE 's/.* ([0-9]+) tests failed out of [0-9]+$/\1/p' "$out" | tail -1)
if [[ -z $total ]]; then
  echo "$name: CTest did not finish (no result line in $out)"
  exit 1
fi
skipped_names=$(sed -nE 's/^[[:space:]]*[0-9]+ - (.*) \(Skipped\)$/\1/p' "$out")
skipped=$(grep -c . <<<"$skipped_names" || true)
echo "$name: $total tests, $((total - failed - skipped)) passed, $failed failed, $skipped skipped"
awk '/^The following tests FAILED:/ { on = 1; next } on && !NF { on = 0 }
  on { sub(/^[[:space:]]*[0-9]+ - /, ""); print "  failed  " $0 }' "$out"
[[ -n $skipped_names ]] || exit 0
# Reasons, by test name, from the full log of the run.
declare -A reason
if [[ -f $log ]]; then
  while IFS=$'\t' read -r test why; do
    reason[$test]=$why
  done < <(awk '
    /^[0-9]+\/[0-9]+ Test: / { sub(/^[0-9]+\/[0-9]+ Test: /, ""); test = $0; next }
    want { print test "\t" $0; want = 0; next }
    /: Skipped$/ { want = 1; next }
    /^skipped: / { sub(/^skipped: /, ""); print test "\t" $0 }
  ' "$log")
fi
while read -r test; do
  echo "  skipped $test: ${reason[$test]:-(no reason printed)}"
done <<<"$skipped_names"
