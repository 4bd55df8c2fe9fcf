#!/usr/bin/env bash
# Installs everything v2p builds, tests and demos with on Debian 12, as root. Idempotent: a second
# run installs nothing and only re-checks. Also mounts bpffs and prepares the QEMU test guest.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
  echo "setup.sh: run as root (it installs packages with apt-get and mounts bpffs)" >&2
  exit 1
fi

packages=(
  build-essential cmake ninja-build pkg-config git clang llvm clang-format libclang-rt-14-dev
  libbpf-dev bpftool liburing-dev libfmt-dev libboost-dev libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev libisal-dev libnbd-dev libnbd-bin python3-libnbd libdevmapper-dev libjerasure-dev libgf-complete-dev
  qemu-utils qemu-system-x86 nbdkit fio jq libgnutls28-dev gnutls-bin
  libsystemd-dev systemd
  libcpp-httplib-dev libncurses-dev tmux prometheus chromium bpftrace
  libvirt-daemon-system libvirt-clients
  e2fsprogs xfsprogs btrfs-progs util-linux kmod
  busybox-static cpio xz-utils zstd dmsetup
  etcd-server etcd-client libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler openssl iproute2
  ccache help2man debhelper dpkg-dev lintian debootstrap
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf
fi

# The Debian cloud kernel and a busybox initramfs for the TCG guest used by demo and tests.
guest_dir=${V2P_GUEST_DIR:-/var/cache/v2p/guest}
if [[ ! -s $guest_dir/vmlinuz ]]; then
  apt-get update -qq
fi
"$(dirname "$0")/guest/build-guest.sh" "$guest_dir"
# Headers of exactly the guest's kernel, for the dm-v2p module the guest test loads (tests/dm).
kheaders=linux-headers-$(cat "$guest_dir/kernel-version")
if ! dpkg-query -W -f='${Status}' "$kheaders" 2>/dev/null | grep -q "install ok installed"; then
  apt-get install -y -qq --no-install-recommends "$kheaders" >/dev/null
fi
echo "setup.sh: ready (guest in $guest_dir)"
