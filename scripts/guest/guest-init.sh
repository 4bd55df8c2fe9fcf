#!/bin/sh
# init of the v2p test guest: writes known patterns to the virtio disk, reads them back with
# O_DIRECT, and reports on the console. Parameters come from the kernel command line:
#   v2p.mib=N      MiB to write (default 16)
#   v2p.chunks=N   number of separate regions (default 4)
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do insmod /modules/"$m" 2>/dev/null; done </modules/order

mib=16
chunks=4
for arg in $(cat /proc/cmdline); do
  case $arg in
    v2p.mib=*) mib=${arg#v2p.mib=} ;;
    v2p.chunks=*) chunks=${arg#v2p.chunks=} ;;
  esac
done

i=0
while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
if [ ! -b /dev/vda ]; then
  echo "V2P-GUEST-FAIL no /dev/vda"
  poweroff -f
fi

per=$((mib / chunks))
[ "$per" -ge 1 ] || per=1
status=OK
c=0
while [ $c -lt "$chunks" ]; do
  # Regions spread over the disk, so the host allocates them in separate places.
  seek=$((c * per * 3))
  dd if=/dev/urandom of=/pattern bs=1M count="$per" 2>/dev/null
  dd if=/pattern of=/dev/vda bs=1M seek="$seek" count="$per" oflag=direct conv=fsync 2>/dev/null
  dd if=/dev/vda of=/readback bs=1M skip="$seek" count="$per" iflag=direct 2>/dev/null
  if ! cmp -s /pattern /readback; then
    status=FAIL
    echo "V2P-GUEST-MISMATCH region $c"
  fi
  echo "V2P-GUEST-PROGRESS region $c of $chunks at ${seek}MiB: ${per}MiB written and read back"
  c=$((c + 1))
done
sync
echo "V2P-GUEST-$status"
poweroff -f
