#!/usr/bin/env bash
# Server-side routing example: starts a cluster of server processes on 127.0.0.1 (node-1 starts
# an embedded etcd, the others join it), runs 1000 operations through any node, then 1000 more
# during which a node joins and another is killed with SIGKILL, checks that every acknowledged
# write reads back with its latest value, and prints formation, replication, migration and
# performance figures. Needs only Go. Every process it starts is stopped when it exits, on
# failure and on Ctrl-C too.
#
#   ./run.sh                 # 8 nodes, then a 9th joins and node-3 is killed
#   NODES=6 ./run.sh         # 6 to 10 nodes
#   BASE_PORT=21000 ./run.sh # ClusterKit ports BASE_PORT+i, data ports BASE_PORT+100+i,
#                            # and node-1's etcd on BASE_PORT+10001 and BASE_PORT+20001
set -euo pipefail
cd "$(dirname "$0")"

NODES=${NODES:-8}
BASE_PORT=${BASE_PORT:-7100}
LEASE_TTL=${LEASE_TTL:-2s}
if [ "$NODES" -lt 6 ] || [ "$NODES" -gt 10 ]; then
	echo "NODES must be between 6 and 10" >&2
	exit 2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/clusterkit-server-side.XXXXXX")
PIDS=()
NAMES=()

# stop_all PID...: SIGTERM (a graceful leave), then SIGKILL for whatever still runs after 15s.
stop_all() {
	local pid
	for pid in "$@"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for _ in $(seq 150); do
		local alive=0
		for pid in "$@"; do
			kill -0 "$pid" 2>/dev/null && alive=1
		done
		[ "$alive" = 0 ] && break
		sleep 0.1
	done
	for pid in "$@"; do
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
}

cleanup() {
	local status=$?
	trap - EXIT INT TERM
	local others=() stopped=0 i
	for i in "${!PIDS[@]}"; do
		if [ "$i" != 1 ] && kill -0 "${PIDS[$i]}" 2>/dev/null; then
			others+=("${PIDS[$i]}")
		fi
	done
	stopped=${#others[@]}
	# The other nodes first: they leave the cluster through node-1's etcd.
	[ "$stopped" -gt 0 ] && stop_all "${others[@]}"
	if [ -n "${PIDS[1]:-}" ] && kill -0 "${PIDS[1]}" 2>/dev/null; then
		stop_all "${PIDS[1]}"
		stopped=$((stopped + 1))
	fi
	if [ "$status" != 0 ]; then
		echo "FAILED (status $status); last log lines of each node:" >&2
		for name in "${NAMES[@]}"; do
			echo "--- $name" >&2
			tail -n 5 "$WORK/$name.log" >&2 || true
		done
	fi
	echo "stopped $stopped node processes; removed $WORK"
	rm -rf "$WORK"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ck_addr() { echo "127.0.0.1:$((BASE_PORT + $1))"; }
kv_addr() { echo "127.0.0.1:$((BASE_PORT + 100 + $1))"; }

# start_node I [JOIN]: starts node-I in the background and records its PID.
start_node() {
	local i=$1 name="node-$1"
	local args=(-id "$name" -addr "$(ck_addr "$i")" -kv-addr "$(kv_addr "$i")" -data-dir "$WORK/$name"
		-lease-ttl "$LEASE_TTL" -log-level warn)
	if [ "$i" != 1 ]; then
		args+=(-join "$(ck_addr 1)")
	fi
	"$WORK/server" "${args[@]}" >"$WORK/$name.out" 2>"$WORK/$name.log" &
	PIDS[$i]=$!
	NAMES+=("$name")
}

# wait_ready I: waits for node-I's "ready" line.
wait_ready() {
	local i=$1
	for _ in $(seq 300); do
		grep -q '^ready ' "$WORK/node-$i.out" 2>/dev/null && return 0
		if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
			echo "node-$i exited before it was ready:" >&2
			tail -n 20 "$WORK/node-$i.log" >&2
			return 1
		fi
		sleep 0.1
	done
	echo "node-$i not ready after 30s" >&2
	return 1
}

# node_list FROM TO: the data API addresses of node-FROM..node-TO, as name=addr pairs.
node_list() {
	local out=()
	for i in $(seq "$1" "$2"); do
		out+=("node-$i=$(kv_addr "$i")")
	done
	(IFS=,; echo "${out[*]}")
}

echo "== building (go build) into $WORK"
go build -o "$WORK/server" ./server
go build -o "$WORK/loadgen" ./loadgen

echo "== starting $NODES nodes on 127.0.0.1 (lease TTL $LEASE_TTL)"
STARTED=$(date +%s%3N)
start_node 1
wait_ready 1
for i in $(seq 2 "$NODES"); do
	start_node "$i"
done
"$WORK/loadgen" wait -cluster "$(ck_addr 1)" -n "$NODES" -since "$STARTED"
for i in $(seq 2 "$NODES"); do
	wait_ready "$i"
done

ALL=$(node_list 1 "$NODES")
echo
echo "== phase 1: 1000 operations through any node, 8 concurrent clients (1 in 5 a read)"
"$WORK/loadgen" run -nodes "$ALL" -ops 1000 -concurrency 8 -prefix p1- -state "$WORK/p1.json"

JOINER=$((NODES + 1))
VICTIM=3 # not node-1: with the embedded default, node-1 runs the cluster's only etcd member
echo
echo "== phase 2: 1000 operations at 100/s; node-$JOINER joins after ~2.5s, node-$VICTIM is killed (SIGKILL) after ~5s"
"$WORK/loadgen" run -nodes "$(node_list 1 "$JOINER")" -ops 1000 -rate 100 -concurrency 8 -prefix p2- \
	-state "$WORK/p2.json" >"$WORK/phase2.txt" &
LOADGEN=$!
sleep 2.5
echo "node-$JOINER joins"
start_node "$JOINER"
wait_ready "$JOINER"
sleep 2.5
echo "node-$VICTIM killed with SIGKILL"
kill -KILL "${PIDS[$VICTIM]}"
wait "${PIDS[$VICTIM]}" 2>/dev/null || true
PHASE2=0
wait "$LOADGEN" || PHASE2=$?
cat "$WORK/phase2.txt"

echo
echo "== after the join and the kill"
"$WORK/loadgen" wait -cluster "$(ck_addr 1)" -n "$NODES"
LIVE=$(node_list 1 "$JOINER" | tr ',' '\n' | grep -v "^node-$VICTIM=" | paste -sd, -)
"$WORK/loadgen" check -nodes "$LIVE" -state "$WORK/p1.json"
"$WORK/loadgen" check -nodes "$LIVE" -state "$WORK/p2.json"

echo
echo "== per-node store counters (replication and migration)"
"$WORK/loadgen" stats -nodes "$(node_list 1 "$JOINER")"
exit "$PHASE2"
