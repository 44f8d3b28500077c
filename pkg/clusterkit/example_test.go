package clusterkit_test

import (
	"fmt"
	"log"
	"os"

	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

// A single node with only the two required options starts an embedded etcd and is primary of
// every partition.
func Example() {
	dir, err := os.MkdirTemp("", "clusterkit-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ck, err := clusterkit.NewClusterKit(clusterkit.Options{NodeID: "node-1", HTTPAddr: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		log.Fatal(err)
	}
	if err := ck.Start(); err != nil {
		log.Fatal(err)
	}
	defer ck.Stop()

	for _, key := range []string{"user:123", "order:100"} {
		p, err := ck.GetPartition(key)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s -> %s, primary %s, I am primary: %v\n", key, p.ID, ck.GetPrimary(p).ID, ck.IsPrimary(p))
	}
	// Output:
	// user:123 -> partition-48, primary node-1, I am primary: true
	// order:100 -> partition-46, primary node-1, I am primary: true
}
