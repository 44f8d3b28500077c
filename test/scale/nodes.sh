# Functions shared by the node-binary scripts of test/scale: build cmd/clusterkit-node, start
# node processes on 127.0.0.1 on the embedded default, wait for them. Sourced with $partitions
# (PARTITION_COUNT) and $ttl (LEASE_TTL) set; needs curl and jq.

dir=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
go build -o "$dir/node" ./cmd/clusterkit-node
# Below Linux's ephemeral range (32768 and up), with the embedded etcd's ports at +10000 and
# +20000: a port another program's outgoing connection holds cannot be picked.
base=$((10000 + RANDOM % 2700))
addr() { echo "127.0.0.1:$((base + $1))"; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f s", b - a }'; }

start() { # start N [JOIN_ADDR]
	NODE_ID=node-$1 HTTP_ADDR=$(addr "$1") DATA_DIR=$dir/${run:-}d$1 JOIN_ADDR=${2:-} \
		PARTITION_COUNT=$partitions LEASE_TTL=$ttl "$dir/node" >"$dir/${run:-}n$1.log" 2>&1 &
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

