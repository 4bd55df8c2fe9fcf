#!/usr/bin/env bash
# A fresh Debian 12 root for checks that must not see what this machine already has installed
# (scripts/fresh-root-check.sh, the .deb install test):
#   debootstrap-root.sh create DIR   minbase bookworm in DIR, /proc /sys /dev /run bound
#                                    in, the host's apt sources and resolver copied
#   debootstrap-root.sh remove DIR   unmounts everything under DIR and deletes it (idempotent)
# Callers run `remove` from a trap so a failed check leaves nothing mounted.
set -euo pipefail

usage() {
  echo "usage: $0 create|remove DIR" >&2
  exit 2
}
[[ $# -eq 2 ]] || usage
action=$1
root=$2
[[ $(id -u) -eq 0 ]] || {
  echo "$0: run as root (debootstrap, mount)" >&2
  exit 1
}

remove_root() {
  [[ -e $root ]] || return 0
  # Deepest mount first; lazy so a process still inside cannot keep the root alive.
  findmnt -rn -o TARGET | grep -F -- "$(realpath "$root")" | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  # A bind mount of a host folder on the same file system (a cache, the guest) would be deleted
  # with the root if it were still mounted: refuse rather than guess.
  if findmnt -rn -o TARGET | grep -qF -- "$(realpath "$root")"; then
    echo "$0: $root still has mounts, not deleting it:" >&2
    findmnt -rn -o TARGET | grep -F -- "$(realpath "$root")" >&2
    return 1
  fi
  rm -rf --one-file-system "$root"
}

case $action in
  create)
    command -v debootstrap >/dev/null || {
      echo "$0: debootstrap is missing (apt-get install debootstrap)" >&2
      exit 1
    }
    remove_root
    mkdir -p "$root"
    mirror=${V2P_DEBIAN_MIRROR:-http://deb.debian.org/debian}
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.debootstrap.log" 2>&1 || {
      echo "$0: debootstrap failed, see $root.debootstrap.log" >&2
      exit 1
    }
    rm -f "$root.debootstrap.log"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    if [[ -d /etc/apt/sources.list.d ]]; then
      rm -f "$root/etc/apt/sources.list"
      cp /etc/apt/sources.list.d/*.sources "$root/etc/apt/sources.list.d/" 2>/dev/null || true
    fi
    # Recursive binds (bpffs under /sys, devpts under /dev) made slaves, so nothing mounted or
    # unmounted inside the root propagates back to the host.
    for m in proc sys dev run; do
      mkdir -p "$root/$m"
      mount --rbind "/$m" "$root/$m"
      mount --make-rslave "$root/$m"
    done
    ;;
  remove) remove_root ;;
  *) usage ;;
esac
