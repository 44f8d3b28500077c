// Command bootstrap is the first node of a cluster, as in the original README's Quick Start.
// With no JoinAddr and no etcd configured, the node starts an embedded etcd: nothing else needs
// to be installed.
//
//	go run ./examples/quickstart/bootstrap
//
// It runs until SIGINT or SIGTERM, then leaves the cluster gracefully. Flags override the
// defaults, for example to run it beside other programs or in tests:
//
//	go run ./examples/quickstart/bootstrap -addr 127.0.0.1:9000 -data-dir /tmp/node-1
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
	addr := flag.String("addr", ":8080", "host:port of the node's HTTP API; its embedded etcd uses port+10000 and port+20000")
	dataDir := flag.String("data-dir", "", "directory for the embedded etcd's data (default <temp dir>/clusterkit/node-1)")
	flag.Parse()

	// Create first node - only 2 fields required!
	ck, err := clusterkit.NewClusterKit(clusterkit.Options{
		NodeID:   "node-1",
		HTTPAddr: *addr,
		DataDir:  *dataDir,
		// Bootstrap: no JoinAddr and no etcd endpoints, so the node starts an embedded etcd.
	})
	if err != nil {
		log.Fatal(err)
	}

	if err := ck.Start(); err != nil {
		log.Fatal(err)
	}

	log.Printf("✅ Bootstrap node started on %s", ck.AdvertiseAddr())

	// Your application logic here. Run until interrupted, then leave the cluster.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	log.Println("stopping node-1")
	if err := ck.Stop(); err != nil {
		log.Fatal(err)
	}
	log.Println("node-1 stopped")
}
