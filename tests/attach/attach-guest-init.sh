#!/bin/sh
# init of the passive-attach test guest (appended to the project's test initramfs, whose
# busybox and virtio modules it uses). For each virtio disk vda, vdb, ... it writes random
# 8 KiB blocks with O_DIRECT at random places, at the queue depth the kernel command line gives
# that disk (v2p.qd=1,32,... in disk order: parallel writers), then reads them back.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r m; do insmod /modules/"$m" 2>/dev/null; done </modules/order

qds=1
writes=256
for arg in $(cat /proc/cmdline); do
  case $arg in
    v2p.qd=*) qds=${arg#v2p.qd=} ;;
    v2p.writes=*) writes=${arg#v2p.writes=} ;;
  esac
done

# One writer: $3 random 8 KiB writes to disk $1 (blocks 0..$2-1), each read back.
writer() {
  n=0
  while [ $n -lt "$3" ]; do
    b=$((RANDOM % $2))
    dd if=/dev/urandom of=/dev/"$1" bs=8k seek=$b count=1 oflag=direct 2>/dev/null
    dd if=/dev/"$1" of=/dev/null bs=8k skip=$b count=1 iflag=direct 2>/dev/null
    n=$((n + 1))
  done
}

i=0
for qd in $(echo "$qds" | tr ',' ' '); do
  disk=vd$(echo abcdefghij | cut -c$((i + 1)))
  j=0
  while [ ! -b /dev/"$disk" ] && [ $j -lt 50 ]; do sleep 0.1; j=$((j + 1)); done
  if [ ! -b /dev/"$disk" ]; then
    echo "V2P-ATTACH-FAIL no /dev/$disk"
    poweroff -f
  fi
  blocks=$(($(cat /sys/block/"$disk"/size) / 16))
  w=0
  while [ $w -lt "$qd" ]; do
    writer "$disk" "$blocks" $((writes / qd)) &
    w=$((w + 1))
  done
  wait
  echo "V2P-ATTACH-DISK $disk qd $qd done"
  i=$((i + 1))
done
sync
echo "V2P-ATTACH-DONE"
poweroff -f
