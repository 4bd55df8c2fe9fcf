# Brings up, on one machine, a 3-member etcd cluster and 4 hosts h1..h4, each in its own
# network namespace on a bridge in a namespace of its own (10.213.0.0/24 exists only inside
# them), each host running `v2p agent --cluster` with two stores; h4's configuration also has
# the pool. Source it with v2p (the binary) set and optionally TTL (lease seconds); it installs
# an EXIT trap that kills everything inside the namespaces and removes them and $W.
# Shared by tests/cluster/cluster_netns_test.sh and bench/cluster/cluster_bench.sh.
TTL=${TTL:-3}
ns=v2pc$$
W=$(mktemp -d /tmp/v2p-cluster-XXXXXX)
pids=()
cleanup() {
  local p n
  # Everything started inside the test's namespaces, whatever forked it.
  for n in br e1 e2 e3 h1 h2 h3 h4; do
    for p in $(ip netns pids "$ns-$n" 2>/dev/null); do pids+=("$p"); done
  done
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do
    for _ in $(seq 100); do [[ -e /proc/$p ]] || break; sleep 0.05; done
  done
  for n in br e1 e2 e3 h1 h2 h3 h4; do ip netns del "$ns-$n" 2>/dev/null; done
  rm -rf "$W"
}
trap cleanup EXIT
die() {
  echo "FAILED: $*"
  for f in "$W"/*.log; do echo "--- $f"; tail -5 "$f"; done
  exit 1
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
in_ns() { local n=$1; shift; ip netns exec "$ns-$n" "$@"; }

# --- topology: bridge namespace + 3 etcd + 4 hosts
for n in br e1 e2 e3 h1 h2 h3 h4; do ip netns add "$ns-$n" && ip -n "$ns-$n" link set lo up; done
ip -n "$ns-br" link add br0 type bridge && ip -n "$ns-br" link set br0 up
attach() {  # attach NAME ADDRESS
  ip -n "$ns-br" link add "p-$1" type veth peer name eth0 netns "$ns-$1"
  ip -n "$ns-br" link set "p-$1" master br0 up
  ip -n "$ns-$1" addr add "$2/24" dev eth0
  ip -n "$ns-$1" link set eth0 up
}
for i in 1 2 3; do attach e$i 10.213.0.1$i; done
for i in 1 2 3 4; do attach h$i 10.213.0.2$i; done
endpoints=10.213.0.11:2379,10.213.0.12:2379,10.213.0.13:2379
start_etcd() {  # start_etcd N
  local i=$1
  ip netns exec "$ns-e$i" etcd --name e$i --data-dir "$W/e$i" --pre-vote \
    --listen-peer-urls http://10.213.0.1$i:2380 --initial-advertise-peer-urls http://10.213.0.1$i:2380 \
    --listen-client-urls http://10.213.0.1$i:2379 --advertise-client-urls http://10.213.0.1$i:2379 \
    --initial-cluster e1=http://10.213.0.11:2380,e2=http://10.213.0.12:2380,e3=http://10.213.0.13:2380 \
    --initial-cluster-token $ns --initial-cluster-state new >>"$W/e$i.log" 2>&1 &
  epid[$i]=$!
  disown $!
  pids+=($!)
}
declare -A epid apid
t0=$(now)
for i in 1 2 3; do start_etcd $i; done
healthy=0
for _ in $(seq 100); do
  if in_ns h4 etcdctl --dial-timeout=1s --endpoints=$endpoints endpoint health >/dev/null 2>&1; then
    healthy=1
    break
  fi
  sleep 0.1
done
((healthy)) || die "etcd cluster not healthy"
echo "etcd: 3 members healthy after $(elapsed "$t0") s"

# --- credentials and agents
"$v2p" cluster init --dir "$W/creds" --host h1 --host h2 --host h3 --host h4 >/dev/null ||
  die "cluster init"
config() {  # config HOST [CREDENTIALS_DIR]
  local h=$1 i=${1#h} creds=${2:-$W/creds/$1}
  mkdir -p "$W/$h/d0" "$W/$h/d1" "$W/$h/run"
  cat >"$W/$h/cluster.json" <<JSON
{"cluster": "t$$", "host": "$h", "etcd": "$endpoints", "ttl_seconds": $TTL,
 "listen": "10.213.0.2$i:7420", "credentials": "$creds",
 "stores": [{"id": ${i}0, "path": "$W/$h/d0"}, {"id": ${i}1, "path": "$W/$h/d1"}],
 "pool": {"metadata": "$W/$h/meta", "layout": "2+2", "container_bytes": 4194304,
          "hedge_ms": ${HEDGE_MS:-50}}}
JSON
}
start_agent() {  # start_agent HOST
  local h=$1
  ip netns exec "$ns-$h" "$v2p" agent --no-probe --no-state --socket "$W/$h/run/agent.sock" \
    --ingest-socket "$W/$h/run/ingest.sock" --cluster "$W/$h/cluster.json" >>"$W/$h.log" 2>&1 &
  apid[$h]=$!
  disown $!
  pids+=($!)
}
for h in h1 h2 h3 h4; do config $h; start_agent $h; done
status() { in_ns h4 "$v2p" cluster status --config "$W/h4/cluster.json" --json 2>/dev/null; }
up_count() { status | jq '[.hosts[] | select(.up)] | length'; }
wait_up() {  # wait_up N
  for _ in $(seq 100); do [[ $(up_count) == "$1" ]] && return 0; sleep 0.1; done
  return 1
}
wait_up 4 || die "4 hosts not up: $(status)"
in_ns h4 "$v2p" cluster status --config "$W/h4/cluster.json"
