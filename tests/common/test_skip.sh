# The shell side of test_skip.hpp, for CTest tests written in bash (source it):
#   skip_machine REASON    what the machine lacks (root, BTF): exit 77, a skip everywhere
#   require_tools TOOL...  a missing tool: exit 77 (a skip), or 1 under CI=true (a failure,
#                          scripts/setup.sh installs every tool a test needs)
# CTest registers these tests with SKIP_RETURN_CODE 77.
skip_machine() {
  echo "skipped: $*"
  exit 77
}

require_tools() {
  local missing=() t
  for t in "$@"; do command -v "$t" >/dev/null || missing+=("$t"); done
  ((${#missing[@]})) || return 0
  if [[ ${CI:-} == true ]]; then
    echo "needs ${missing[*]} (not installed) -- a failure, not a skip, under CI=true: scripts/setup.sh installs it"
    exit 1
  fi
  echo "skipped: needs ${missing[*]} (not installed)"
  exit 77
}
