#!/usr/bin/env bash
# The README's node-binary scale figures, as a new user would get them: node processes of
# cmd/clusterkit-node on the embedded default etcd, loopback, LEASE_TTL=5s; three nodes started
# one after another (each once the previous answers /health), then three more at once. It prints
# when each Start returned, when each group settled (every node on one epoch, the map lists them
# all, nothing pending), each process's peak and current resident memory, the bootstrap node's
# etcd directory, the size of GET /cluster, and the lease losses the logs report. Resident
# memory is printed as settled and again 30 s later: RssFile is etcd's memory-mapped database.
#
#   test/scale/node-binary.sh [PARTITION_COUNT]      (default 65536; needs curl, jq)
set -euo pipefail

partitions=${1:-65536}
dir=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

cd "$(dirname "$0")/../.."
go build -o "$dir/node" ./cmd/clusterkit-node
base=$((20000 + RANDOM % 20000))
addr() { echo "127.0.0.1:$((base + $1))"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f s", b - a }'; }

start() { # start N [JOIN_ADDR]
	NODE_ID=node-$1 HTTP_ADDR=$(addr "$1") DATA_DIR=$dir/d$1 JOIN_ADDR=${2:-} \
		PARTITION_COUNT=$partitions LEASE_TTL=5s "$dir/node" >"$dir/n$1.log" 2>&1 &
	pids+=($!)
}
ready() { # wait until node N answers /health, for at most 60 s
	for _ in $(seq 1200); do
		curl -sf "http://$(addr "$1")/health" >/dev/null && return 0
		sleep 0.05
	done
	echo "node-$1 not ready after 60 s; its log: $dir/n$1.log" >&2
	return 1
}
settled() { # every one of nodes 1..N holds one epoch, the map lists N nodes, none pending
	local n=$1 epoch="" e
	for i in $(seq "$n"); do
		e=$(curl -sf "http://$(addr "$i")/health" | jq -r .epoch) || return 1
		[ -z "$epoch" ] && epoch=$e
		[ "$e" = "$epoch" ] || return 1
	done
	curl -sf "http://$(addr 1)/cluster" | jq -e --argjson n "$n" \
		'(.cluster.nodes | length) == $n and ([.cluster.partition_map[] | select((.pending_nodes // []) | length > 0)] | length) == 0' >/dev/null || return 1
	echo "epoch $epoch"
}
wait_settled() { # wait_settled N T0 WHAT: at most 3 minutes
	for _ in $(seq 1800); do
		if r=$(settled "$1"); then
			echo "$1 nodes settled $(since "$2") after $3, $r"
			return 0
		fi
		sleep 0.1
	done
	echo "$1 nodes not settled after 3 minutes" >&2
	return 1
}

t0=$(now)
start 1
ready 1 && echo "node-1 ready $(since "$t0") after its start"
for i in 2 3; do
	ti=$(now)
	start "$i" "$(addr 1)"
	ready "$i" && echo "node-$i ready $(since "$ti") after its start"
done
wait_settled 3 "$(now)" "the third start returned"
t4=$(now)
for i in 4 5 6; do start "$i" "$(addr 1)"; done
for i in 4 5 6; do ready "$i"; done
echo "nodes 4-6 ready $(since "$t4") after their start"
wait_settled 6 "$t4" "nodes 4-6 were started"
rss() { # what each node process holds now, and its peak
	for i in "${!pids[@]}"; do
		echo "node-$((i + 1))$1: $(grep -E 'VmHWM|VmRSS|RssAnon|RssFile' "/proc/${pids[$i]}/status" | tr -s ' \t\n' ' ')"
	done
}
rss ""
# The Go runtime returns freed memory to the system over the following seconds.
sleep 30
rss " 30 s later"
echo "node-1 etcd directory: $(du -sh "$dir/d1/etcd" | cut -f1)"
echo "GET /cluster: $(curl -sf "http://$(addr 1)/cluster" | wc -c) bytes"
echo "lease losses logged: $(cat "$dir"/n*.log | grep -ci 'lease lost\|lease not renewed' || true)"
