#!/usr/bin/env bash
# Many hosts on one machine (netns_cluster.sh: a 3-member etcd cluster and 4 hosts in network
# namespaces, nothing routed outside); host h4 also runs the pool (`v2p cluster
# put|get|rebuild|rebalance`). Checked, in order:
#   put/get across hosts (2+2, one chunk per host); kill -9 of h1's agent and h2's link cut:
#   both seen down within the lease TTL (+ etcd's expiry slack), reads exact, rebuild restores
#   k+m on the hosts left, nothing acknowledged lost; the isolated h2 cannot place writes (the
#   split); one etcd member killed: the cluster keeps working; a peer with another CA's
#   certificate gets no chunk; h1 and h2 come back, rebalance moves chunks onto them; h1 is
#   drained and leaves.
# Every namespace, process and file it makes is removed on exit, failure included.
# Usage: cluster_netns_test.sh V2P_BINARY
set -uo pipefail
here=$(dirname "$(readlink -f "$0")")
source "$here/../common/test_skip.sh"
v2p=$(readlink -f "$1")
[[ $(id -u) -eq 0 ]] || skip_machine "needs root (network namespaces)"
require_tools etcd etcdctl ip openssl jq
ip netns add v2p-probe-$$ 2>/dev/null || skip_machine "cannot create network namespaces here"
ip netns del v2p-probe-$$

fail=0
check() {  # check WHAT CONDITION...
  local what=$1
  shift
  if "$@"; then echo "ok: $what"; else echo "FAILED: $what"; fail=1; fi
}
source "$here/netns_cluster.sh"
"$v2p" cluster init --dir "$W/foreign" --host h4 >/dev/null || die "foreign init"

# --- which host serves which VM (the agents publish their VMs with the heartbeat)
head -c $((1 << 20)) /dev/zero >"$W/h3/vm7.img"
in_ns h3 "$v2p" vm add vm7 --vdisk disk0 --image "$W/h3/vm7.img" --agent "$W/h3/run/agent.sock" \
  >/dev/null || die "vm add on h3"
whose=""
for _ in $(seq 100); do
  whose=$(in_ns h4 "$v2p" cluster whose --config "$W/h4/cluster.json" vm7 2>/dev/null) && break
  sleep 0.1
done
check "cluster whose: vm7 is served by h3" test "$whose" == "vm7 h3 10.213.0.23:7420"
check "cluster whose: an unknown VM is an error" \
  bash -c "! ip netns exec $ns-h4 $v2p cluster whose --config $W/h4/cluster.json nosuchvm 2>/dev/null"

# --- put/get across hosts
gw=(in_ns h4 "$v2p" cluster)
gwc=(--config "$W/h4/cluster.json")
head -c $((24 << 20)) /dev/urandom >"$W/img1"
"${gw[@]}" put "${gwc[@]}" --vm 1 --image "$W/img1" || die "put"
"${gw[@]}" get "${gwc[@]}" --vm 1 --length $((24 << 20)) --out "$W/back1" || die "get"
check "put/get across 4 hosts reads back exactly" cmp -s "$W/img1" "$W/back1"
pool_json() { "${gw[@]}" pool "${gwc[@]}" --json; }
check "one chunk per host (no container shares a host)" \
  test "$(pool_json | jq '[.vms[].containers_sharing_domains] | add')" == 0
for h in h1 h2 h3 h4; do
  check "host $h holds chunks" test "$(ls "$W/$h/d0/chunks" "$W/$h/d1/chunks" | grep -c '\.')" -gt 0
done

# --- kill -9 one agent, cut another host's link
t_loss=$(now)
# Started directly (no function or subshell in between), so $! is the agent itself.
[[ $(status | jq '.hosts[] | select(.host=="h1") | .pid') == "${apid[h1]}" ]] || die "h1's pid"
kill -9 "${apid[h1]}"
ip -n "$ns-br" link set p-h2 down
seen=0
for _ in $(seq 200); do
  s=$(status)
  if [[ $(jq -r '.hosts[] | select(.host=="h1") | .up' <<<"$s") == false &&
    $(jq -r '.hosts[] | select(.host=="h2") | .up' <<<"$s") == false ]]; then
    seen=1
    break
  fi
  sleep 0.05
done
detect=$(elapsed "$t_loss")
echo "loss of h1 (kill -9) and h2 (link cut) seen after $detect s (TTL $TTL s)"
check "both losses seen" test $seen == 1
((seen)) || { status | jq -c '.hosts[] | [.host, .up, .pid, .load]'; tail -n 3 "$W/h1.log" "$W/h2.log"; }
# etcd expires a lease up to ~0.5 s after its TTL, more across a leader change (facts file).
check "losses seen within TTL + 2 s" awk -v d="$detect" -v t=$TTL 'BEGIN { exit !(d < t + 2) }'
"${gw[@]}" get "${gwc[@]}" --vm 1 --length $((24 << 20)) --out "$W/back2" >"$W/get2.out" ||
  die "degraded get: $(cat "$W/get2.out")"
check "reads exact with 2 of 4 hosts lost" cmp -s "$W/img1" "$W/back2"
grep -q 'degraded' "$W/get2.out" && check "those reads were degraded" grep -vq ' 0 degraded' "$W/get2.out"

# --- the split: h2 is alive but cut off from etcd; it must not place writes
head -c $((4 << 20)) /dev/urandom >"$W/img3"
config h2 >/dev/null
if in_ns h2 timeout 20 "$v2p" cluster put --config "$W/h2/cluster.json" --vm 3 --image "$W/img3" \
  >"$W/split.out" 2>&1; then
  check "isolated host refuses to place writes" false
else
  check "isolated host refuses to place writes" grep -q etcd "$W/split.out"
fi

check "the isolated host's agent still answers locally" \
  in_ns h2 "$v2p" status --agent "$W/h2/run/agent.sock" >/dev/null
check "the isolated host logged one line about etcd" test "$(grep -c 'etcd unreachable' "$W/h2.log")" == 1

# --- rebuild onto the hosts left
t_rb=$(now)
"${gw[@]}" rebuild "${gwc[@]}" >"$W/rebuild.out" 2>&1 || die "rebuild: $(cat "$W/rebuild.out")"
rb=$(elapsed "$t_rb")
tail -3 "$W/rebuild.out"
chunks=$(grep -o '^rebuild: [0-9]* chunks moved' "$W/rebuild.out" | grep -o '[0-9]*')
echo "rebuild: $chunks chunks in $rb s"
pj=$(pool_json)
check "rebuild: h3 and h4 stores hold all their chunks" \
  test "$(jq '[.stores[] | select(.id >= 30) | .chunks_expected - .chunks_present] | add' <<<"$pj")" == 0
check "rebuild: nothing left on h1 and h2" \
  test "$(jq '[.stores[] | select(.id < 30) | .chunks_expected] | add' <<<"$pj")" == 0
check "rebuild: every container has k+m chunks present" \
  test "$(jq '[.vms[].chunks_missing] | add' <<<"$pj")" == 0
"${gw[@]}" get "${gwc[@]}" --vm 1 --length $((24 << 20)) --out "$W/back3" >/dev/null || die "get after rebuild"
check "reads exact after rebuild" cmp -s "$W/img1" "$W/back3"

# --- one etcd member down: the cluster keeps working
kill -9 "${epid[1]}"
head -c $((8 << 20)) /dev/urandom >"$W/img2"
"${gw[@]}" put "${gwc[@]}" --vm 2 --image "$W/img2" >/dev/null 2>&1 ||
  "${gw[@]}" put "${gwc[@]}" --vm 2 --image "$W/img2" || die "put with one etcd member down"
"${gw[@]}" get "${gwc[@]}" --vm 2 --length $((8 << 20)) --out "$W/back4" >/dev/null || die "get"
check "put/get with one etcd member down" cmp -s "$W/img2" "$W/back4"
check "status with one etcd member down" test "$(up_count)" == 2

# --- a peer with another CA's certificate gets nothing
config h4 "$W/foreign/h4" >/dev/null
mv "$W/h4/meta" "$W/h4/meta.real"
if in_ns h4 "$v2p" cluster get --config "$W/h4/cluster.json" --vm 1 --length 4096 \
  --out "$W/foreign.out" >"$W/foreign.log" 2>&1; then
  check "a peer without the cluster credential is refused" false
else
  check "a peer without the cluster credential is refused" test ! -e "$W/foreign.out"
fi
rm -rf "$W/h4/meta"
mv "$W/h4/meta.real" "$W/h4/meta"
config h4 >/dev/null
grep -qi 'handshake\|certificate' "$W/h3.log" "$W/h4.log" 2>/dev/null || true

# --- h1 and h2 come back: they register again and rebalance moves chunks onto them
ip -n "$ns-br" link set p-h2 up
start_agent h1
wait_up 4 || die "h1/h2 did not come back: $(status)"
"${gw[@]}" rebalance "${gwc[@]}" >"$W/rebalance.out" 2>&1 || die "rebalance: $(cat "$W/rebalance.out")"
tail -1 "$W/rebalance.out"
pj=$(pool_json)
check "rebalance: h1 and h2 hold chunks again" \
  test "$(jq '[.stores[] | select(.id < 30) | .chunks_expected] | add' <<<"$pj")" -gt 0
"${gw[@]}" get "${gwc[@]}" --vm 1 --length $((24 << 20)) --out "$W/back5" >/dev/null || die "get after rebalance"
check "reads exact after rebalance" cmp -s "$W/img1" "$W/back5"
"${gw[@]}" get "${gwc[@]}" --vm 2 --length $((8 << 20)) --out "$W/back6" >/dev/null || die "get vm 2"
check "nothing acknowledged lost (vm 2)" cmp -s "$W/img2" "$W/back6"

# --- a host that leaves is drained: its chunks move to the others, then it is no member
"${gw[@]}" drain "${gwc[@]}" h1 >"$W/drain.out" 2>&1 || die "drain: $(cat "$W/drain.out")"
kill -TERM "${apid[h1]}"  # a clean stop revokes its lease at once
for _ in $(seq 100); do [[ -e /proc/${apid[h1]} ]] || break; sleep 0.05; done
pj=$(pool_json)
check "drain: chunks moved off h1" grep -q '^drain: [1-9][0-9]* chunks moved or rebuilt of [0-9]*, 0 failed' "$W/drain.out"
check "drain: nothing expected on h1's stores" \
  test "$(jq '[.stores[] | select(.id == 10 or .id == 11) | .chunks_expected] | add // 0' <<<"$pj")" == 0
check "drain: every container has k+m chunks present" test "$(jq '[.vms[].chunks_missing] | add' <<<"$pj")" == 0
check "drain: h1 is no longer listed" test "$(status | jq '[.hosts[] | select(.host=="h1")] | length')" == 0
"${gw[@]}" get "${gwc[@]}" --vm 1 --length $((24 << 20)) --out "$W/back7" >/dev/null || die "get after drain"
check "reads exact after h1 was drained" cmp -s "$W/img1" "$W/back7"

echo "figures: detect ${detect}s (TTL ${TTL}s), rebuild ${chunks} chunks in ${rb}s, load $(cut -d' ' -f1-3 /proc/loadavg)"
exit $fail
