#!/usr/bin/env bash
# Cross-host pool vs single-host pool, side by side in one run, on one machine: the 4 hosts of
# tests/cluster/netns_cluster.sh (3 etcd members, 4 agents in network namespaces; they share the
# machine's cores) against `v2p ec` with the same k+m, container size and 8 store directories in
# the root namespace. Rounds alternate which goes first; medians and the ratio are printed, with
# the load average, so a quiet machine can re-run it. Then the time to see a host lost
# (kill -9 of its agent, lease TTL 3 s) and the rebuild rate onto the 3 hosts left.
# Usage (root): [HEDGE_MS=50] bench/cluster/cluster_bench.sh BUILD/cli/v2p [MiB per put, 64] [rounds, 5]
# (HEDGE_MS: the gateway pool's hedge before it reads the fastest k of k + m instead.)
set -uo pipefail
v2p=$(readlink -f "$1")
mib=${2:-64}
rounds=${3:-5}
here=$(dirname "$(readlink -f "$0")")
[[ $(id -u) -eq 0 ]] || { echo "needs root (network namespaces)"; exit 1; }
TTL=3
source "$here/../../tests/cluster/netns_cluster.sh"

bytes=$((mib << 20))
head -c $bytes /dev/urandom >"$W/img"
mkdir -p "$W/local/meta"
local_flags=(--metadata "$W/local/meta" --layout 2+2 --allow-shared-domains --container-bytes 4194304)
for s in 1 2 3 4 5 6 7 8; do mkdir -p "$W/local/s$s"; local_flags+=(--store "$s=$W/local/s$s"); done
gw=(in_ns h4 "$v2p" cluster)
gwc=(--config "$W/h4/cluster.json")
timed() {  # timed CMD... -> seconds on stdout
  local t
  t=$(now)
  "$@" >/dev/null || { echo "failed: $*" >&2; exit 1; }
  elapsed "$t"
}
declare -a lp lg cp cg
for r in $(seq "$rounds"); do
  vm=$((100 + r))
  one_local() {
    lp+=("$(timed "$v2p" ec put "${local_flags[@]}" --vm $vm --image "$W/img")")
    lg+=("$(timed "$v2p" ec get "${local_flags[@]}" --vm $vm --length $bytes --out "$W/l.out")")
    cmp -s "$W/img" "$W/l.out" || { echo "local get differs"; exit 1; }
  }
  one_cluster() {
    cp+=("$(timed "${gw[@]}" put "${gwc[@]}" --vm $vm --image "$W/img")")
    cg+=("$(timed "${gw[@]}" get "${gwc[@]}" --vm $vm --length $bytes --out "$W/c.out")")
    cmp -s "$W/img" "$W/c.out" || { echo "cluster get differs"; exit 1; }
  }
  if ((r % 2)); then one_local; one_cluster; else one_cluster; one_local; fi
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mbps() { awk -v b=$bytes -v s="$1" 'BEGIN { printf "%.1f", b / 1048576 / s }'; }
mlp=$(median "${lp[@]}"); mlg=$(median "${lg[@]}"); mcp=$(median "${cp[@]}"); mcg=$(median "${cg[@]}")
echo "cluster_bench: $mib MiB per put, 2+2, 4 MiB containers, $rounds rounds, medians (whole command: pool open included)"
printf '%-8s %14s %14s %8s\n' op "single MiB/s" "cluster MiB/s" ratio
printf '%-8s %14s %14s %8s\n' put "$(mbps "$mlp")" "$(mbps "$mcp")" "$(awk -v a="$mlp" -v b="$mcp" 'BEGIN{printf "%.2f", a/b}')"
printf '%-8s %14s %14s %8s\n' get "$(mbps "$mlg")" "$(mbps "$mcg")" "$(awk -v a="$mlg" -v b="$mcg" 'BEGIN{printf "%.2f", a/b}')"

# --- time to see a lost host, then the rebuild rate onto the other three
t=$(now)
kill -9 "${apid[h2]}"
for _ in $(seq 400); do
  [[ $(status | jq -r '.hosts[] | select(.host=="h2") | .up') == false ]] && break
  sleep 0.02
done
echo "lost host seen down after $(elapsed "$t") s (lease TTL $TTL s)"
"${gw[@]}" rebuild "${gwc[@]}" >"$W/rebuild.out" 2>&1 || { cat "$W/rebuild.out"; exit 1; }
chunks=$(grep -o '^rebuild: [0-9]* chunks moved' "$W/rebuild.out" | grep -o '[0-9]*')
secs=$(grep -o '^rebuild: [0-9.]* s$' "$W/rebuild.out" | grep -o '[0-9.]*')
awk -v c="$chunks" -v s="$secs" -v mib="$mib" -v r="$rounds" 'BEGIN {
  printf "rebuild: %d chunks (2 MiB each) in %.2f s = %.1f MiB/s of chunks re-created\n", c, s, 2 * c / s }'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
