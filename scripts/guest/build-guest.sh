#!/usr/bin/env bash
# Builds the small QEMU test guest: the Debian cloud kernel (downloaded as a package, never
# installed on the host) and a busybox initramfs whose init drives a disk workload on /dev/vda.
# Usage: build-guest.sh OUTDIR   -> OUTDIR/vmlinuz, OUTDIR/initrd.img
# Idempotent: reuses OUTDIR when it is complete.
set -euo pipefail

out=${1:?usage: build-guest.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
if [[ -s $out/vmlinuz && -s $out/initrd.img && $out/initrd.img -nt $here/guest-init.sh &&
      -s $out/modules/dm-mod.ko ]]; then
  exit 0
fi

work=$(mktemp -d /tmp/v2p-guest-build.XXXXXX)
trap 'rm -rf "$work"' EXIT

kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
if [[ -z $kpkg ]]; then
  echo "build-guest: cannot find the Debian cloud kernel package (run apt-get update)" >&2
  exit 1
fi
chmod 0777 "$work"  # apt drops to the _apt user for downloads
(cd "$work" && apt-get download -qq "$kpkg" >/dev/null)
dpkg-deb -x "$work"/"$kpkg"_*.deb "$work/kernel"
kver=${kpkg#linux-image-}
cp "$work/kernel/boot/vmlinuz-$kver" "$out/vmlinuz"

root=$work/initramfs
mkdir -p "$root"/{bin,dev,proc,sys,modules}
cp /bin/busybox "$root/bin/busybox"
for tool in sh mount insmod dd cmp echo cat sync sleep poweroff head sha256sum; do
  ln -sf busybox "$root/bin/$tool"
done
# Inserted in dependency order; none of them is built into the cloud kernel.
moddir=$work/kernel/lib/modules/$kver/kernel/drivers
for m in virtio/virtio_ring virtio/virtio virtio/virtio_pci_modern_dev virtio/virtio_pci_legacy_dev \
         virtio/virtio_pci block/virtio_blk; do
  f=$(ls "$moddir/$m".ko* 2>/dev/null | head -1 || true)
  [[ -n $f ]] || continue  # built in on this kernel version
  case $f in
    *.xz) xz -dc "$f" >"$root/modules/$(basename "$m").ko" ;;
    *.zst) zstd -qdc "$f" >"$root/modules/$(basename "$m").ko" ;;
    *) cp "$f" "$root/modules/$(basename "$m").ko" ;;
  esac
  echo "$(basename "$m").ko" >>"$root/modules/order"
done
# Kept beside the kernel for tests that build their own initramfs (tests/dm): the virtio
# modules above, device-mapper, and the version that module builds must match.
rm -rf "$out/modules"
cp -r "$root/modules" "$out/modules"
dm=$(ls "$moddir"/md/dm-mod.ko* | head -1)
case $dm in
  *.xz) xz -dc "$dm" >"$out/modules/dm-mod.ko" ;;
  *.zst) zstd -qdc "$dm" >"$out/modules/dm-mod.ko" ;;
  *) cp "$dm" "$out/modules/dm-mod.ko" ;;
esac
echo "$kver" >"$out/kernel-version"
install -m 0755 "$here/guest-init.sh" "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out/initrd.img"
