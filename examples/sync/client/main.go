// Command client drives the sync example's cluster with the Go client SDK (pkg/client): it learns
// the partition map from the nodes (-seeds, their ClusterKit addresses) with pkg/client, and
// writes each key to every holder of its partition in parallel, succeeding at a majority
// (examples/sync/quorum). Subcommands wait, run, check and stats: see examples/internal/loadgen.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/clusterkit-go/clusterkit/examples/internal/loadgen"
	"github.com/clusterkit-go/clusterkit/examples/internal/report"
	"github.com/clusterkit-go/clusterkit/examples/internal/workload"
	"github.com/clusterkit-go/clusterkit/examples/sync/quorum"
	"github.com/clusterkit-go/clusterkit/pkg/client"
)

func main() {
	var seeds *string
	loadgen.Main(os.Args, loadgen.Client{
		Flags: func(fs *flag.FlagSet) {
			seeds = fs.String("seeds", "", "ClusterKit HTTP addresses of nodes to learn the map from, comma-separated")
		},
		New: func(ctx context.Context, _ report.Nodes, httpc *http.Client, token string) (workload.KV, func(), error) {
			if *seeds == "" {
				return nil, nil, errors.New("-seeds is required")
			}
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			list := strings.Split(*seeds, ",")
			tlsCfg, err := report.ClusterKitTLS(ctx, list[0], token)
			if err != nil {
				return nil, nil, err
			}
			c, err := client.New(ctx, client.Config{Seeds: list, TLS: tlsCfg})
			if err != nil {
				return nil, nil, err
			}
			kv := quorum.NewKV(c, httpc, "loadgen")
			return kv, func() {
				kv.Close()
				fmt.Printf("client (pkg/client): followed the map to epoch %d; %d write or read rounds fell short of a quorum and were retried\n",
					c.Epoch(), kv.Retries.Load())
				c.Close()
			}, nil
		},
	})
}
