#!/usr/bin/env bash
# The dm-v2p guest test: builds the module against the guest kernel's headers, boots the TCG
# guest once with an initramfs carrying dm-mod, dm-v2p, dmsetup and the test tool, and checks
# every step's PASS line (tests/dm/guest-init.sh), then the records and the map against FIEMAP
# on the host (dm_guest_check). Cleans up everything it made, also on failure.
#   dm_guest_test.sh SOURCE_DIR GUEST_TOOL GUEST_CHECK V2P
set -euo pipefail
src=$1 tool=$2 check=$3 v2p=$4
# shellcheck source=../common/test_skip.sh
source "$src/tests/common/test_skip.sh"
require_tools qemu-system-x86_64 dmsetup cpio mkfs.ext4 make gcc tar
guest=${V2P_GUEST_DIR:-/var/cache/v2p/guest}
if [[ ! -s $guest/vmlinuz || ! -s $guest/kernel-version || ! -s $guest/modules/dm-mod.ko ]]; then
  [[ ${CI:-} == true ]] && { echo "no test guest with dm-mod in $guest: run scripts/setup.sh"; exit 1; }
  skip_machine "no test guest with dm-mod in $guest (scripts/setup.sh builds it)"
fi
kver=$(cat "$guest/kernel-version")
kdir=/usr/src/linux-headers-$kver
if [[ ! -d $kdir ]]; then
  [[ ${CI:-} == true ]] && { echo "needs linux-headers-$kver (scripts/setup.sh installs it)"; exit 1; }
  skip_machine "needs linux-headers-$kver to build dm-v2p (not installed)"
fi

work=$(mktemp -d /tmp/v2p-dm-test.XXXXXX)
qemu_pid=
cleanup() {
  [[ -n $qemu_pid ]] && kill "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
  if [[ -n ${V2P_DM_KEEP:-} ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap "exit 1" INT TERM

# The module, built out of tree against the guest kernel's headers.
cp "$src"/kmod/{dm-v2p.c,dm-v2p-uapi.h,Kbuild} "$work/"
mkdir "$work/kmod" && mv "$work"/{dm-v2p.c,dm-v2p-uapi.h,Kbuild} "$work/kmod/"
start=$SECONDS
make -s -C "$kdir" M="$work/kmod" modules >"$work/kbuild.log" 2>&1 || {
  cat "$work/kbuild.log"
  echo "FAIL: dm-v2p does not build against $kdir"
  exit 1
}
echo "built dm-v2p.ko against $kver in $((SECONDS - start)) s"

# The initramfs: busybox, the modules in load order, dmsetup with its libraries, the tool.
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys,modules}
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$guest"/modules/*.ko "$root/modules/"
cp "$work/kmod/dm-v2p.ko" "$root/modules/"
{ cat "$guest/modules/order"; echo dm-mod.ko; echo dm-v2p.ko; } >"$root/modules/order"
copy_bin() {
  cp "$1" "$root/bin/"
  ldd "$1" | awk '/=> \//{print $3} /^\t\/lib64/{print $1}' | while read -r l; do
    mkdir -p "$root$(dirname "$l")"
    cp -L "$l" "$root$l"
  done
}
copy_bin "$(command -v dmsetup)"
# `v2p dm` as an operator runs it: the real CLI with its libraries, without debug sections.
copy_bin "$v2p"
find "$root" -name '*.so*' -path '*libv2p*' -exec strip --strip-debug {} +
strip --strip-debug "$root/bin/v2p"
cp "$tool" "$root/bin/dm_guest_tool"
install -m 0755 "$src/tests/dm/guest-init.sh" "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.img"

truncate -s 256M "$work/data.raw"
mkfs.ext4 -F -q "$work/data.raw"
truncate -s 64M "$work/out.raw"

start=$SECONDS
timeout 420 qemu-system-x86_64 -accel tcg -m 512 -nographic -no-reboot -kernel "$guest/vmlinuz" \
  -initrd "$work/initrd.img" -append "console=ttyS0 panic=-1 quiet tsc=reliable ${V2P_DM_APPEND:-}" \
  -drive file="$work/data.raw",format=raw,if=virtio,cache=unsafe \
  -drive file="$work/out.raw",format=raw,if=virtio </dev/null >"$work/console.log" 2>&1 &
qemu_pid=$!
wait "$qemu_pid" || true
qemu_pid=
echo "guest ran $((SECONDS - start)) s (load average $(cut -d' ' -f1-3 /proc/loadavg))"
grep -a 'V2P-DM' "$work/console.log" | tr -d '\r'

failed=0
grep -aq 'V2P-DM FAIL' "$work/console.log" && failed=1
grep -aq 'V2P-DM DONE' "$work/console.log" || { echo "FAIL: the guest did not finish"; tail -40 "$work/console.log"; failed=1; }
for step in targets bad-table create bad-message unload-refused write limit-iops limit-bandwidth \
  suspend-held prio stats cli reload ring-drops unload no-oops; do
  grep -aq "V2P-DM PASS $step " "$work/console.log" || { echo "FAIL: step $step did not pass"; failed=1; }
done

mkdir "$work/out"
if tar -xf "$work/out.raw" -C "$work/out" 2>/dev/null; then
  "$check" "$work/out" || failed=1
else
  echo "FAIL: no output archive from the guest"
  failed=1
fi
if ((failed)); then
  grep -aE 'v2p|BUG|Oops|WARNING' "$work/out/dmesg.txt" 2>/dev/null | tail -30 || true
  exit 1
fi
echo "dm-v2p guest test: every step passed"
