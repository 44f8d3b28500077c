#!/usr/bin/env bash
# How fast a cluster forms on the embedded default, as a new user would start it: node
# processes of cmd/clusterkit-node on 127.0.0.1, PARTITION_COUNT=64, LEASE_TTL=5s. First five
# nodes, each started once the one before answers /health: when each answered, and when all five
# hold one map that lists them with nothing pending. Then, in a new cluster, twenty nodes started
# at once (one bootstrap node and nineteen joining it). Times are measured by polling every
# 50 ms (ready) and 100 ms (settled), so they are up to that much late.
#
#   test/scale/formation.sh        (needs curl, jq)
set -euo pipefail

partitions=64
ttl=5s
source "$(dirname "$0")/nodes.sh"

t0=$(now)
start 1
ready 1 && echo "node-1 ready $(since "$t0") after its start"
for i in 2 3 4 5; do
	ti=$(now)
	start "$i" "$(addr 1)"
	ready "$i" && echo "node-$i ready $(since "$ti") after its start"
done
wait_settled 5 "$t0" "the first start"
echo "etcd members: $(for i in 1 2 3 4 5; do curl -sf "http://$(addr "$i")/health" | jq -r .etcd_member; done | sort | uniq -c | tr -s ' \n' ' ')"

for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()
base=$((base + 100))
run=b
t0=$(now)
start 1
for i in $(seq 2 20); do start "$i" "$(addr 1)"; done
for i in $(seq 20); do ready "$i"; done
echo "20 nodes started at once: all ready $(since "$t0") after the start"
wait_settled 20 "$t0" "the start"
