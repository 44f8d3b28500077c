#!/usr/bin/env bash
# Async example: a cluster of server processes on 127.0.0.1 whose primaries answer a write once
# they have stored it and replicate it in the background, and a client (pkg/client) that sends
# each operation to the key's primary. Runs 1000 operations, then 1000 more during which a node
# joins and another is killed with SIGKILL; reads back every acknowledged write; prints
# formation, replication, migration and performance figures. Needs only Go; every process it
# starts is stopped when it exits.
#
# A primary killed before its queue went out loses the writes it had acknowledged and not yet
# replicated: the read-back then reports them, and the script still succeeds (README.md says
# why and how often).
#
#   ./run.sh                 # 8 nodes, then a 9th joins and node-3 is killed
#   NODES=6 ./run.sh         # 6 to 10 nodes
#   BASE_PORT=21000 ./run.sh # other ports (see ../internal/runlib.sh)
set -euo pipefail
cd "$(dirname "$0")"
source ../internal/runlib.sh

TITLE="async: the client writes to the primary (pkg/client), which replicates in the background"
SERVER_PKG=./server
CLIENT_PKG=./client
client_args() { echo "-seeds $1"; }
CHECK_MAY_FAIL=1
run_example
