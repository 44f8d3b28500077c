package client_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/clusterkit-go/clusterkit/pkg/client"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

// A client learns the map from a node, routes keys exactly as the node does, and runs an
// operation on a key's primary (here GET /health of the node's API).
func Example() {
	dir, err := os.MkdirTemp("", "clusterkit-client-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	node, err := clusterkit.NewClusterKit(clusterkit.Options{NodeID: "node-1", HTTPAddr: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		log.Fatal(err)
	}
	if err := node.Start(); err != nil {
		log.Fatal(err)
	}
	defer node.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.New(ctx, client.Config{Seeds: []string{node.AdvertiseAddr()}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	r, err := c.Route("user:123")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("user:123 -> %s, primary %s\n", r.Partition, r.Primary().ID)

	err = c.Do(ctx, "user:123", func(ctx context.Context, n client.Node, r client.Route) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.Addr+"/health", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err // a connection error: Do tries the next holder
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode == http.StatusServiceUnavailable {
			return fmt.Errorf("%s: %w", n.ID, client.ErrUnavailable) // next holder too
		}
		fmt.Printf("%s answered %d\n", n.ID, resp.StatusCode)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// user:123 -> partition-48, primary node-1
	// node-1 answered 200
}
