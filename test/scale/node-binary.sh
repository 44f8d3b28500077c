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
ttl=5s
source "$(dirname "$0")/nodes.sh"

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
