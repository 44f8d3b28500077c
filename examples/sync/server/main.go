// Command server is a node of the client-side sync example: it stores what clients write to it
// and serves reads of its own copy; the client (examples/sync/client, through pkg/client)
// writes each key to every holder of its partition in parallel and counts the acknowledgements.
//
// The node runs the shared store (versions, epoch fencing, migration through the partition
// hooks) and the quorum endpoints (examples/sync/quorum):
//
//	POST /sync/write  a client write, stamped with the partition's primary epoch in the client's
//	                  map; refused when the node knows a newer primary epoch (409 stale_epoch)
//	                  or a holder or copying node the client did not write to (409 map_changed)
//	POST /sync/read   this node's copy of a key, under the same check
//
// Flags: see examples/internal/kvnode.
package main

import (
	"flag"
	"log"
	"os"

	"github.com/clusterkit-go/clusterkit/examples/internal/kvnode"
	"github.com/clusterkit-go/clusterkit/examples/internal/store"
	"github.com/clusterkit-go/clusterkit/examples/sync/quorum"
)

func main() {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	cfg := kvnode.RegisterFlags(fs)
	fs.Parse(os.Args[1:])
	err := kvnode.Run(cfg, store.Sync, func(n *kvnode.Node) {
		n.Mux.Handle("/sync/", quorum.Handler(n.CK, n.Store))
	})
	if err != nil {
		log.Fatal(err)
	}
}
