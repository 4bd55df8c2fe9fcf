#!/usr/bin/env bash
# dist/libvirt/hooks/qemu without libvirtd: the hook run the way libvirtd runs it (minimal
# environment, domain XML on stdin) against a real `v2p agent --no-probe` and `v2p serve`.
# Checks what decides whether a VM may start: registered at prepare, removed at release, no
# agent or a disk that is not a v2p export never blocks, an agent's real error does (exit 1).
# Usage: libvirt_hook_unit_test.sh V2P_BINARY HOOK_SCRIPT
set -uo pipefail

v2p=$(readlink -f "$1")
dir=$(mktemp -d /tmp/v2p-hook-unit.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  exit 1
}
command -v jq >/dev/null || {
  echo "SKIP: needs jq"
  exit 77
}

# The hook with its settings file pointed at this test's agent.
sed "s|^conf=.*|conf=$dir/hook.conf|" "$2" >"$dir/hook"
printf 'v2p=%s\nagent_socket=%s\n' "$v2p" "$dir/agent.sock" >"$dir/hook.conf"
hook() { # DOMAIN OP SUB < XML
  env -i LC_ALL=C PATH=/usr/bin:/bin HOME=/root sh "$dir/hook" "$1" "$2" "$3" - 2>"$dir/hook.err"
}
domain_xml() { # SOCKET EXPORT
  cat <<XML
<domain type='qemu'>
  <name>ignored-the-hook-uses-its-argument</name>
  <devices>
    <disk type='file' device='disk'>
      <source file='$dir/other.img'/>
    </disk>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw'/>
      <source protocol='nbd' name='$2'>
        <host transport='unix' socket='$1'/>
      </source>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
XML
}
wait_for() { # FILE TEXT
  for ((i = 0; i < 100; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
added() { # DOMAIN -> true / false / empty
  "$v2p" vm list --json --agent "$dir/agent.sock" |
    jq -r --arg d "$1" '.[] | select(.vm == $d) | .vdisks[0].added'
}

truncate -s 16M "$dir/vm1.raw"
"$v2p" serve --image "$dir/vm1.raw" --vdisk disk0 --socket "$dir/vm1.sock" \
  --agent "$dir/ingest.sock" >"$dir/serve.log" 2>&1 &
pids+=($!)
wait_for "$dir/serve.log" "v2p serve: ready" || fail "v2p serve did not start"

# No agent yet: the VM starts (exit 0), the hook says why it did nothing.
domain_xml "$dir/vm1.sock" disk0 | hook dom1 prepare begin || fail "no agent blocked the VM"
grep -q "no v2p agent" "$dir/hook.err" || fail "no agent: $(cat "$dir/hook.err")"

"$v2p" agent --no-probe --socket "$dir/agent.sock" --ingest-socket "$dir/ingest.sock" \
  --state-dir "$dir/state" >"$dir/agent.log" 2>&1 &
pids+=($!)
wait_for "$dir/agent.log" "v2p agent: ready" || fail "the agent did not start"

domain_xml "$dir/vm1.sock" disk0 | hook dom1 prepare begin || fail "prepare: $(cat "$dir/hook.err")"
[[ $(added dom1) == true ]] || fail "prepare did not add dom1: $(cat "$dir/hook.err")"
# Other operations leave the agent alone.
domain_xml "$dir/vm1.sock" disk0 | hook dom1 stopped end || fail "stopped end failed"
[[ $(added dom1) == true ]] || fail "stopped end removed dom1"
domain_xml "$dir/vm1.sock" disk0 | hook dom1 release end || fail "release failed"
[[ -z $(added dom1) ]] || fail "release did not remove dom1"

# A socket no v2p export listens on, or another export name: not v2p's business.
domain_xml "$dir/none.sock" disk0 | hook dom2 prepare begin || fail "a foreign disk blocked the VM"
domain_xml "$dir/vm1.sock" other | hook dom2 prepare begin || fail "a foreign export blocked the VM"
domain_xml "$dir/vm1.sock" "" | hook dom2 prepare begin || fail "NBD's default export blocked the VM"
[[ -z $(added dom2) ]] || fail "dom2 added for a disk that is not a v2p export"

# The agent answers with an error (the export's image is gone): the VM must not start.
rm "$dir/vm1.raw"
if domain_xml "$dir/vm1.sock" disk0 | hook dom3 prepare begin; then
  fail "an agent error did not block the VM"
fi
grep -q "v2p hook: dom3 disk $dir/vm1.sock (disk0):" "$dir/hook.err" ||
  fail "the refusal does not say why: $(cat "$dir/hook.err")"
echo "PASS"
