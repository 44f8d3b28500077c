// Command join starts a node that joins an existing cluster, as in the original README's Quick
// Start. Start the bootstrap program first; this node asks it, at JoinAddr, where the cluster's
// etcd is.
//
//	go run ./examples/quickstart/join
//
// It runs until SIGINT or SIGTERM, then leaves the cluster gracefully: the cluster moves its
// partitions to the other nodes at once. Flags override the defaults:
//
//	go run ./examples/quickstart/join -addr 127.0.0.1:9001 -join 127.0.0.1:9000 -data-dir /tmp/node-2
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

func main() {
	addr := flag.String("addr", ":8081", "host:port of the node's HTTP API")
	join := flag.String("join", "localhost:8080", "HTTP address (host:port) of a node of the cluster to join")
	dataDir := flag.String("data-dir", "", "directory for the node's data (default <temp dir>/clusterkit/node-2)")
	flag.Parse()

	// Create node that joins existing cluster
	ck, err := clusterkit.NewClusterKit(clusterkit.Options{
		NodeID:   "node-2",
		HTTPAddr: *addr,
		JoinAddr: *join, // Bootstrap node address
		DataDir:  *dataDir,
	})
	if err != nil {
		log.Fatal(err)
	}

	if err := ck.Start(); err != nil {
		log.Fatal(err)
	}

	log.Printf("✅ node-2 joined cluster via %s, serving on %s", *join, ck.AdvertiseAddr())

	// Run until interrupted, then leave the cluster.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	log.Println("stopping node-2")
	if err := ck.Stop(); err != nil {
		log.Fatal(err)
	}
	log.Println("node-2 stopped")
}
