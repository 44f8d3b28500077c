#!/usr/bin/env bash
# Client-side sync example: a cluster of server processes on 127.0.0.1, and a client that learns
# the partition map with pkg/client and writes each key to every holder of its partition in
# parallel, succeeding at a majority. Runs 1000 operations, then 1000 more during which a node
# joins and another is killed with SIGKILL; checks that every acknowledged write reads back with
# its latest value; prints formation, replication, migration and performance figures. Needs
# only Go; every process it starts is stopped when it exits.
#
#   ./run.sh                 # 8 nodes, then a 9th joins and node-3 is killed
#   NODES=6 ./run.sh         # 6 to 10 nodes
#   BASE_PORT=21000 ./run.sh # other ports (see ../internal/runlib.sh)
set -euo pipefail
cd "$(dirname "$0")"
source ../internal/runlib.sh

TITLE="client-side sync: the client writes to every holder in parallel and succeeds at a majority"
SERVER_PKG=./server
CLIENT_PKG=./client
client_args() { echo "-seeds $1"; }
run_example
