#!/usr/bin/env bash
# The Debian packages, built and then used as an operator would:
#   1. dpkg-buildpackage -us -uc -b on a copy of the checkout (build-deb/v2p-VERSION; the .debs
#      land in build-deb/), then lintian: any error (E:) fails;
#   2. a fresh Debian 12 root (scripts/debootstrap-root.sh), `apt-get install ./*.deb` there (so
#      debian/control's Depends/Recommends must pull what the demo needs), `v2p demo` from
#      /usr/bin with the test guest bound in read-only;
#   3. samples/map-report built there against the installed libv2p-dev, run on the demo's map.
# Needs root (debootstrap, chroot, the demo's loop device and eBPF), network for apt.
#   build-deb.sh --no-build   steps 2 and 3 only, on the .debs a previous run left in build-deb/
set -euo pipefail
build=1
case ${1:-} in
  "") ;;
  --no-build) build=0 ;;
  *)
    echo "usage: $0 [--no-build]" >&2
    exit 2
    ;;
esac
top=$(cd "$(dirname "$0")/.." && pwd)
jobs=${V2P_JOBS:-$(nproc)}
[[ $(id -u) -eq 0 ]] || {
  echo "$0: run as root (chroot, loop devices and eBPF for the demo)" >&2
  exit 1
}
out=$top/build-deb
version=$(sed -n '1s/^v2p (\([^)]*\)).*/\1/p' "$top/debian/changelog")
src=$out/v2p-$version
guest=${V2P_GUEST_DIR:-/var/cache/v2p/guest}
root=$out/root-$$
cleanup() { "$top/scripts/debootstrap-root.sh" remove "$root"; }
trap cleanup EXIT

if ((build)); then
  echo "== dpkg-buildpackage (log: $out/dpkg-buildpackage.log)"
  rm -rf "$out"
  mkdir -p "$src"
  # The files git tracks or would track (what a CI checkout has), not this tree's build dirs.
  git -C "$top" ls-files -z --cached --others --exclude-standard |
    tar -C "$top" --null --ignore-failed-read -T - -cf - | tar -C "$src" -xf -
  # debhelper (compat 13) points HOME into the source tree: name the shared cache explicitly.
  if command -v ccache >/dev/null; then
    CCACHE_DIR=${CCACHE_DIR:-$(ccache -k cache_dir)}
    export CCACHE_DIR
  fi
  if ! (cd "$src" && CCACHE_BASEDIR=$src CCACHE_NOHASHDIR=1 \
    DEB_BUILD_OPTIONS="parallel=$jobs nocheck noddebs" dpkg-buildpackage -us -uc -b) \
    >"$out/dpkg-buildpackage.log" 2>&1; then
    tail -40 "$out/dpkg-buildpackage.log" >&2
    echo "$0: dpkg-buildpackage failed, see $out/dpkg-buildpackage.log" >&2
    exit 1
  fi
  ls "$out"/*.deb

  echo "== lintian"
  lintian --fail-on error --tag-display-limit 0 "$out"/*.changes
fi

echo "== install in a fresh Debian 12 root"
"$top/scripts/debootstrap-root.sh" create "$root"
mkdir -p "$root/var/cache/v2p/guest" "$root/tmp/debs"
mount --bind "$guest" "$root/var/cache/v2p/guest"
mount -o remount,bind,ro "$root/var/cache/v2p/guest"
debs=()
for deb in "$out"/*.deb; do
  [[ -e $deb ]] || {
    echo "$0: no .deb in $out (run without --no-build first)" >&2
    exit 1
  }
  cp "$deb" "$root/tmp/debs/"
  debs+=("/tmp/debs/$(basename "$deb")")
done
# Install, do not start: no service belongs running inside a build root.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
in_root() { chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }
in_root apt-get update -qq
in_root apt-get install -y -qq "${debs[@]}" >/dev/null
in_root v2p --version
test -s "$root/usr/share/man/man1/v2p-demo.1.gz"  # man pages shipped

echo "== v2p demo from /usr/bin in the fresh root"
in_root /usr/bin/v2p demo --snapshot /tmp/demo.snap

echo "== samples/map-report against the installed libv2p-dev"
in_root apt-get install -y -qq --no-install-recommends cmake g++ ninja-build >/dev/null
cp -r "$top/samples/map-report" "$root/tmp/map-report"
in_root cmake -S /tmp/map-report -B /tmp/map-report/build -G Ninja >/dev/null
in_root cmake --build /tmp/map-report/build
in_root /tmp/map-report/build/v2p-map-report /tmp/demo.snap
echo "build-deb.sh: packages built, lint-clean, installed and working in a fresh root"
