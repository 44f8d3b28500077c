// Command server is a node of the async example. Its data API (examples/internal/store) takes
// a write on the partition's primary only (POST /store/put; 421 not_primary elsewhere), stores
// it, answers at once, and replicates it to the replicas from a background queue. A replica
// refuses a queued write stamped with an older primary epoch than it knows; the writer then
// hands it to the partition's new primary, which adopts it (merging by version) and replicates
// it under its own epoch.
//
//	server -id node-1 -addr 127.0.0.1:8080 -kv-addr 127.0.0.1:9080
//	server -id node-2 -addr 127.0.0.1:8081 -kv-addr 127.0.0.1:9081 -join 127.0.0.1:8080
//
// Flags: see examples/internal/kvnode.
package main

import (
	"flag"
	"log"
	"os"

	"github.com/clusterkit-go/clusterkit/examples/internal/kvnode"
	"github.com/clusterkit-go/clusterkit/examples/internal/store"
)

func main() {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	cfg := kvnode.RegisterFlags(fs)
	fs.Parse(os.Args[1:])
	if err := kvnode.Run(cfg, store.Async, nil); err != nil {
		log.Fatal(err)
	}
}
