# Shared by the examples' run.sh (sourced, not run): starts a cluster of the example's server
# processes on 127.0.0.1 (node-1 creates it on embedded etcd, the others join it; nodes 1 to 3
# run the embedded etcd's three members, ClusterKit's default), runs 1000
# operations, then 1000 more during which a node joins and another is killed with SIGKILL,
# reads back every acknowledged write, and prints formation, replication, migration and
# performance figures. Every process it starts is stopped when the script exits, on failure and
# on Ctrl-C too.
#
# The sourcing script sets, then calls run_example:
#   TITLE        what the example is
#   SERVER_PKG   the server's package (go build path), CLIENT_PKG the load generator's
#   client_args  a function printing the load generator's extra flags for run and check, given
#                the ClusterKit addresses of the running nodes (comma-separated)
#   CHECK_MAY_FAIL  when set, a failed read-back is reported but does not fail the script
# Settings from the environment: NODES (6 to 10, default 8), BASE_PORT (default 7100: node i
# listens on BASE_PORT+i for ClusterKit and BASE_PORT+100+i for data; nodes 1 to 3 run etcd
# on BASE_PORT+10000+i and BASE_PORT+20000+i), LEASE_TTL (default 2s), and JOIN_TOKEN: when set,
# every node and the load generator read it, the data APIs require it, and ClusterKit runs in
# its secure mode (its API over https with the cluster's CA; see the READMEs).

NODES=${NODES:-8}
BASE_PORT=${BASE_PORT:-7100}
LEASE_TTL=${LEASE_TTL:-2s}
PIDS=()
NAMES=()
WORK=

ck_addr() { echo "127.0.0.1:$((BASE_PORT + $1))"; }
kv_addr() { echo "127.0.0.1:$((BASE_PORT + 100 + $1))"; }

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
	local members=() others=() i
	for i in "${!PIDS[@]}"; do
		if kill -0 "${PIDS[$i]}" 2>/dev/null; then
			if [ "$i" -le 3 ]; then
				members+=("${PIDS[$i]}")
			else
				others+=("${PIDS[$i]}")
			fi
		fi
	done
	# Nodes 1 to 3 run the embedded etcd's members: the others leave first, through them; then
	# the members together, so that none waits for a quorum that is already gone.
	if [ "${#others[@]}" -gt 0 ]; then
		stop_all "${others[@]}"
	fi
	if [ "${#members[@]}" -gt 0 ]; then
		stop_all "${members[@]}"
	fi
	if [ "$status" != 0 ] && [ -n "$WORK" ]; then
		echo "FAILED (status $status); last log lines of each node:" >&2
		for name in "${NAMES[@]}"; do
			echo "--- $name" >&2
			tail -n 5 "$WORK/$name.log" >&2 || true
		done
	fi
	echo "stopped $((${#members[@]} + ${#others[@]})) node processes; removed ${WORK:-nothing}"
	[ -n "$WORK" ] && rm -rf "$WORK"
	exit "$status"
}

# start_node I: starts node-I in the background (joining node-1 unless it is node-1).
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

# join_with FUNC I...: FUNC's output for each node number, comma-separated.
join_with() {
	local f=$1 out=() i
	shift
	for i in "$@"; do
		out+=("$("$f" "$i")")
	done
	(IFS=,; echo "${out[*]}")
}
named_kv_addr() { echo "node-$1=$(kv_addr "$1")"; }
# node_list I...: the data API addresses of the nodes, as name=addr pairs; ck_list I...: their
# ClusterKit addresses.
node_list() { join_with named_kv_addr "$@"; }
ck_list() { join_with ck_addr "$@"; }

run_example() {
	if [ "$NODES" -lt 6 ] || [ "$NODES" -gt 10 ]; then
		echo "NODES must be between 6 and 10" >&2
		exit 2
	fi
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/clusterkit-example.XXXXXX")

	echo "== $TITLE"
	echo "== building (go build) into $WORK"
	go build -o "$WORK/server" "$SERVER_PKG"
	go build -o "$WORK/client" "$CLIENT_PKG"

	echo "== starting $NODES nodes on 127.0.0.1 (lease TTL $LEASE_TTL; nodes 1-3 run the embedded etcd members)"
	local started i
	started=$(date +%s%3N)
	# Nodes 1 to 3 one after the other: the first three to join run the etcd members. The others
	# join together.
	for i in 1 2 3; do
		start_node "$i"
		wait_ready "$i"
	done
	for i in $(seq 4 "$NODES"); do
		start_node "$i"
	done
	"$WORK/client" wait -cluster "$(ck_addr 1)" -n "$NODES" -since "$started"
	for i in $(seq 4 "$NODES"); do
		wait_ready "$i"
	done

	local all joiner=$((NODES + 1)) victim=3 live
	all=$(seq 1 "$NODES")
	echo
	echo "== phase 1: 1000 operations, 8 concurrent clients (1 in 5 a read)"
	# shellcheck disable=SC2046,SC2086
	"$WORK/client" run -nodes "$(node_list $all)" $(client_args "$(ck_list $all)") \
		-ops 1000 -concurrency 8 -prefix p1- -state "$WORK/p1.json"

	# node-3 runs one of the three etcd members: the other two keep the quorum. Not node-1: the
	# reports read the map from it.
	echo
	echo "== phase 2: 1000 operations at 100/s; node-$joiner joins after ~2.5s, node-$victim is killed (SIGKILL) after ~5s"
	# shellcheck disable=SC2046,SC2086
	"$WORK/client" run -nodes "$(node_list $all "$joiner")" $(client_args "$(ck_list $all)") \
		-ops 1000 -rate 100 -concurrency 8 -prefix p2- -state "$WORK/p2.json" >"$WORK/phase2.txt" &
	local loadgen=$! phase2=0
	sleep 2.5
	echo "node-$joiner joins"
	start_node "$joiner"
	wait_ready "$joiner"
	sleep 2.5
	echo "node-$victim killed with SIGKILL"
	kill -KILL "${PIDS[$victim]}"
	wait "${PIDS[$victim]}" 2>/dev/null || true
	wait "$loadgen" || phase2=$?
	cat "$WORK/phase2.txt"

	echo
	echo "== after the join and the kill"
	"$WORK/client" wait -cluster "$(ck_addr 1)" -n "$NODES"
	live=$(seq 1 "$joiner" | grep -vx "$victim")
	local checks=0
	for phase in p1 p2; do
		# shellcheck disable=SC2046,SC2086
		"$WORK/client" check -nodes "$(node_list $live)" $(client_args "$(ck_list $live)") \
			-state "$WORK/$phase.json" || checks=$?
	done

	echo
	echo "== per-node store counters (replication and migration)"
	# shellcheck disable=SC2086
	"$WORK/client" stats -nodes "$(node_list $(seq 1 "$joiner"))"
	if [ "$checks" != 0 ] && [ -z "${CHECK_MAY_FAIL:-}" ]; then
		exit "$checks"
	fi
	exit "$phase2"
}
