// Command client drives the async example's cluster with the Go client SDK (pkg/client): it
// learns the partition map from the nodes in -seeds, keeps it fresh, and sends each operation
// to the key's primary, which answers once it has stored the write (replication follows in
// the background). Subcommands wait, run, check and stats: see examples/internal/loadgen.
package main

import (
	"context"
	"errors"
	"flag"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/clusterkit-go/clusterkit/examples/internal/loadgen"
	"github.com/clusterkit-go/clusterkit/examples/internal/report"
	"github.com/clusterkit-go/clusterkit/examples/internal/workload"
	"github.com/clusterkit-go/clusterkit/pkg/client"
)

func main() {
	var seeds string
	loadgen.Main(os.Args, loadgen.Client{
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&seeds, "seeds", "", "ClusterKit HTTP addresses of some nodes, comma-separated: where the client learns the map")
		},
		New: func(ctx context.Context, _ report.Nodes, httpc *http.Client, token string) (workload.KV, func(), error) {
			if seeds == "" {
				return nil, nil, errors.New("-seeds is required")
			}
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			list := strings.Split(seeds, ",")
			tlsCfg, err := report.ClusterKitTLS(ctx, list[0], token)
			if err != nil {
				return nil, nil, err
			}
			c, err := client.New(ctx, client.Config{Seeds: list, TLS: tlsCfg})
			if err != nil {
				return nil, nil, err
			}
			return &workload.Primary{Client: c, HTTP: httpc}, func() { c.Close() }, nil
		},
	})
}
