#!/usr/bin/env bash
# dist/libvirt/hooks/qemu with a real libvirtd (no systemd): `v2p agent` and `v2p serve` on a
# loop-device ext4 image, a TCG guest defined and started with virsh whose disk is the export's
# unix socket (protocol nbd). The hook registers the VM at prepare (the agent lists it as added),
# the guest's writes show up verified in the agent's map, and `virsh destroy` (release) removes
# it. One libvirtd start (~8 s: it re-probes QEMU each time). Everything it changes is undone on
# exit, failure included. Usage: libvirt_hook_test.sh V2P_BINARY HOOK_SCRIPT
set -uo pipefail

v2p=$(readlink -f "$1")
hook_src=$(readlink -f "$2")
guest=/var/cache/v2p/guest
skip() {
  echo "SKIP: $*"
  exit 77
}
[[ $(id -u) -eq 0 ]] || skip "needs root (libvirtd, loop devices, the agent's probe)"
command -v libvirtd >/dev/null && command -v virtlogd >/dev/null && command -v virsh >/dev/null ||
  skip "no libvirtd (apt-get install libvirt-daemon-system libvirt-clients)"
[[ -r $guest/vmlinuz && -r $guest/initrd.img ]] || skip "no test guest in $guest (scripts/setup.sh)"
[[ -e /sys/kernel/btf/vmlinux ]] || skip "needs BTF (the agent's probe)"
[[ -e /run/libvirtd.pid || -S /run/libvirt/libvirt-sock ]] &&
  skip "a libvirtd is already running here: this test starts its own"

dom=v2p-lvhook-$$
dir=/tmp/$dom
hook=/etc/libvirt/hooks/qemu
conf=/etc/v2p/libvirt-hook.conf
virsh=(virsh -q -c qemu:///system)
pids=()
created=()  # directories this test created under /etc, removed (if empty) at the end
loopdev=""
# libvirtd writes its first-start state under /etc/libvirt (nwfilter, secrets): undone at the end.
etc_before=$(find /etc/libvirt | sort)
cgroups_before=$(find /sys/fs/cgroup -maxdepth 3 -type d -path '*machine*' 2>/dev/null | sort)

log() { echo "[$(date +%T.%N | cut -c1-12)] $*"; }
fail() {
  echo "FAIL: $*"
  for f in agent.log serve.log libvirtd.log console.log; do
    [[ -f $dir/$f ]] && {
      echo "--- $f"
      tail -n 30 "$dir/$f"
    }
  done
  exit 1
}

cleanup() {
  set +e
  if [[ -n ${libvirtd_pid:-} ]]; then
    "${virsh[@]}" destroy "$dom" >/dev/null 2>&1
    "${virsh[@]}" undefine "$dom" >/dev/null 2>&1
  fi
  # Stop what this test started, newest first, by pid.
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  for f in "$hook" "$conf"; do
    if [[ -e $f.v2p-test-$$ ]]; then mv -f "$f.v2p-test-$$" "$f"; else rm -f "$f"; fi
  done
  for ((i = ${#created[@]} - 1; i >= 0; i--)); do rmdir "${created[i]}" 2>/dev/null; done
  comm -13 <(echo "$etc_before") <(find /etc/libvirt | sort) | sort -r | while read -r f; do
    if [[ -d $f ]]; then rmdir "$f"; else rm -f "$f"; fi
  done
  # libvirt leaves its (empty) machine cgroups behind: remove the ones it made, deepest first.
  comm -13 <(echo "$cgroups_before") \
    <(find /sys/fs/cgroup -maxdepth 3 -type d -path '*machine*' 2>/dev/null | sort) |
    awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2- | while read -r d; do
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  rm -f "/var/log/libvirt/qemu/$dom.log"*  # QEMU's log (libvirt keeps it after undefine)
  mountpoint -q "$dir/mnt" && umount "$dir/mnt"
  [[ -n $loopdev ]] && losetup -d "$loopdev"
  rm -rf "$dir"
}
trap cleanup EXIT

mkdir_etc() {
  [[ -d $1 ]] && return
  mkdir -p "$1"
  created+=("$1")
}

mkdir -p "$dir/mnt" "$dir/state"
chmod 0755 "$dir" # QEMU (libvirt-qemu) must be able to reach the socket in it

# The hook must be in place before libvirtd starts (it looks for hooks only then).
mkdir_etc /etc/libvirt/hooks
mkdir_etc /etc/v2p
for f in "$hook" "$conf"; do [[ -e $f ]] && mv "$f" "$f.v2p-test-$$"; done
install -m 0755 "$hook_src" "$hook"
printf 'v2p=%s\nagent_socket=%s\n' "$v2p" "$dir/agent.sock" >"$conf"

# The image on a loop-device ext4, so the probe sees real block I/O.
truncate -s 256M "$dir/fs.img"
loopdev=$(losetup -f --show "$dir/fs.img") || fail "losetup"
mkfs.ext4 -q "$loopdev" && mount "$loopdev" "$dir/mnt" || fail "mkfs/mount $loopdev"
truncate -s 64M "$dir/mnt/vm1.raw"

wait_for() { # FILE TEXT SECONDS
  for ((i = 0; i < $3 * 10; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

"$v2p" agent --socket "$dir/agent.sock" --ingest-socket "$dir/ingest.sock" \
  --state-dir "$dir/state" --snapshot-interval-ms 300 >"$dir/agent.log" 2>&1 &
pids+=($!)
wait_for "$dir/agent.log" "v2p agent: ready" 20 || fail "the agent did not start"
# No --vm: the export names the VM after the QEMU that connects (-name guest=DOMAIN).
"$v2p" serve --image "$dir/mnt/vm1.raw" --vdisk disk0 --socket "$dir/vm1.sock" \
  --socket-mode 0660 --agent "$dir/ingest.sock" >"$dir/serve.log" 2>&1 &
pids+=($!)
wait_for "$dir/serve.log" "v2p serve: ready" 20 || fail "v2p serve did not start"
chgrp kvm "$dir/vm1.sock" || fail "chgrp kvm"

virtlogd >"$dir/virtlogd.log" 2>&1 &
pids+=($!)
libvirtd >"$dir/libvirtd.log" 2>&1 &
libvirtd_pid=$!
pids+=("$libvirtd_pid")
for ((i = 0; i < 300; i++)); do
  "${virsh[@]}" version >/dev/null 2>&1 && break
  kill -0 "$libvirtd_pid" 2>/dev/null || fail "libvirtd exited"
  sleep 0.1
done
"${virsh[@]}" version >/dev/null 2>&1 || fail "libvirtd did not answer in 30 s"
log "libvirtd answers"

# No <acpi/>: the guest's final `poweroff -f` then only halts it, and the domain stays running
# until `virsh destroy`, so the map is checked while the VM is still there.
cat >"$dir/dom.xml" <<XML
<domain type='qemu'>
  <name>$dom</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$guest/vmlinuz</kernel>
    <initrd>$guest/initrd.img</initrd>
    <cmdline>console=ttyS0 panic=-1 v2p.mib=16 v2p.chunks=4</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source protocol='nbd' name='disk0'>
        <host transport='unix' socket='$dir/vm1.sock'/>
      </source>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='file'>
      <source path='$dir/console.log'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
XML
"${virsh[@]}" define "$dir/dom.xml" >/dev/null || fail "virsh define"
log "defined"
"${virsh[@]}" start "$dom" || fail "virsh start"
log "started"

q() { "$v2p" "$@" --agent "$dir/agent.sock"; }
# The prepare hook ran: the agent knows the VM from `v2p vm add`, not only from its export.
added=$(q vm list --json | jq -r --arg d "$dom" \
  '.[] | select(.vm == $d) | .vdisks[] | select(.vdisk == "disk0") | .added')
[[ $added == true ]] || fail "the prepare hook did not add $dom: $(q vm list --json)"

wait_for "$dir/console.log" "V2P-GUEST-OK\|V2P-GUEST-FAIL\|V2P-GUEST-MISMATCH" 60 ||
  fail "the guest did not finish"
grep -q V2P-GUEST-OK "$dir/console.log" || fail "the guest failed"
log "guest wrote 16 MiB"

# The agent's map of the guest's disk, verified against the image's real layout (FIEMAP).
for ((i = 0; i < 100; i++)); do
  v=$(q verify --vm "$dom" --json --allow-mismatch 2>/dev/null) &&
    [[ $(jq '.vdisks[0].bytes_observed' <<<"$v") -ge $((16 << 20)) ]] && break
  sleep 0.1
done
echo "$v" | jq -c '.vdisks[0] | {vdisk, bytes_observed, bytes_right, bytes_wrong, accuracy}'
[[ $(jq '.vdisks[0].bytes_observed' <<<"$v") -ge $((16 << 20)) ]] ||
  fail "the agent did not observe the guest's 16 MiB"
[[ $(jq '.vdisks[0].bytes_wrong' <<<"$v") -eq 0 ]] || fail "the map disagrees with FIEMAP"
extents=$(q map --vm "$dom" --json | jq '[.. | objects | select(has("sector"))] | length')
[[ $extents -ge 4 ]] || fail "v2p map --json shows $extents extents: $(q map --vm "$dom" --json)"
log "map: $extents extents, verified"

# release end: the VM leaves the agent.
"${virsh[@]}" destroy "$dom" >/dev/null || fail "virsh destroy"
for ((i = 0; i < 100; i++)); do
  q status --json | jq -e --arg d "$dom" '[.vms[] | select(.vm == $d)] | length == 0' \
    >/dev/null && break
  sleep 0.1
done
q status --json | jq -e --arg d "$dom" '[.vms[] | select(.vm == $d)] | length == 0' >/dev/null ||
  fail "$dom is still in v2p status after virsh destroy: $(q status --json | jq -c .vms)"
log "destroyed: $dom is gone from v2p status"
echo "PASS"
