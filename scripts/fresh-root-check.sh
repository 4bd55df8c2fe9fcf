#!/usr/bin/env bash
# The README's test command as a newcomer runs it: a fresh Debian 12 root (debootstrap minbase),
# git installed there, this checkout's HEAD cloned into /root/v2p (a 0700 home, the most common
# place), then `scripts/run-tests.sh` as root with CI=true, so a test that would skip for a
# package scripts/setup.sh forgot fails instead. Every package comes from setup.sh inside the
# root. The root is removed afterwards, also on failure or Ctrl-C.
#   scripts/fresh-root-check.sh [DIR]   (default /var/tmp/v2p-fresh-root.PID)
# Prints run-tests.sh's summary (steps, counts per half, skips with reasons) and the time taken;
# the full log stays in DIR.log. Exit status: run-tests.sh's.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
root=${1:-/var/tmp/v2p-fresh-root.$$}
log=$root.log
[[ $(id -u) -eq 0 ]] || {
  echo "$0: run as root (debootstrap, chroot, and the tests it runs)" >&2
  exit 1
}
sha=$(git -C "$top" rev-parse HEAD)
if [[ -n $(git -C "$top" status --porcelain --untracked-files=no) ]]; then
  echo "$0: note: uncommitted changes are not checked, only HEAD ($sha)" >&2
fi

# The tests run in a session of their own (setsid), so Ctrl-C or a kill stops all of them
# before the root is removed; waiting in the background lets the trap run at once.
tests_pid=
stop_tests() {
  [[ -n $tests_pid ]] && kill -TERM -- "-$tests_pid" 2>/dev/null
  return 0
}
trap 'stop_tests; "$top/scripts/debootstrap-root.sh" remove "$root"' EXIT
trap 'exit 130' INT TERM
started=$SECONDS
echo "fresh-root-check: debootstrap into $root (log: $log)"
"$top/scripts/debootstrap-root.sh" create "$root"

in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}
echo "fresh-root-check: installing git, cloning $sha into /root/v2p"
in_root bash -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends git ca-certificates >/dev/null'
# The clone comes from a bundle of this repository, so the root needs no path on the host.
git -C "$top" bundle create -q "$root/tmp/v2p.bundle" --all
in_root git clone -q /tmp/v2p.bundle /root/v2p
in_root git -C /root/v2p checkout -q --detach "$sha"
rm -f "$root/tmp/v2p.bundle"

# The host's compiler cache, bound in unless V2P_FRESH_ROOT_CCACHE=0: only compiler output is
# shared (keyed on the compiler, flags and sources), every package still comes from setup.sh, and
# the two builds take minutes instead of most of an hour on two cores.
cache_env=()
if [[ ${V2P_FRESH_ROOT_CCACHE:-1} != 0 ]] && command -v ccache >/dev/null; then
  host_cache=$(ccache -k cache_dir)
  mkdir -p "$host_cache" "$root/var/cache/v2p-ccache"
  mount --bind "$host_cache" "$root/var/cache/v2p-ccache"
  cache_env=(CCACHE_DIR=/var/cache/v2p-ccache "CCACHE_MAXSIZE=$(ccache -k max_size)")
  echo "fresh-root-check: the host's ccache ($host_cache) is bound in (V2P_FRESH_ROOT_CCACHE=0: not)"
fi

echo "fresh-root-check: scripts/run-tests.sh in the root (CI=true)"
rc=0
setsid chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 CI=true "${cache_env[@]}" \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  bash -c 'cd /root/v2p && scripts/run-tests.sh' >"$log" 2>&1 &
tests_pid=$!
wait "$tests_pid" || rc=$?
tests_pid=
minutes=$(((SECONDS - started) / 60))
sed -n '/^== summary/,$p' "$log"
echo "fresh-root-check: $sha, exit $rc, $minutes min in all (debootstrap, setup.sh, both halves," \
  "samples, smoke, fuzzers); full log: $log"
exit "$rc"
