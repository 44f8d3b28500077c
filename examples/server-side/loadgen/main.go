// Command loadgen drives the server-side example's cluster as a plain HTTP client that knows
// nothing of the cluster: each request goes to one of the nodes in -nodes, at random, which
// routes it (another node is tried when one does not answer). Subcommands wait, run, check and
// stats: see examples/internal/loadgen.
package main

import (
	"context"
	"net/http"
	"os"

	"github.com/clusterkit-go/clusterkit/examples/internal/loadgen"
	"github.com/clusterkit-go/clusterkit/examples/internal/report"
	"github.com/clusterkit-go/clusterkit/examples/internal/workload"
)

func main() {
	loadgen.Main(os.Args, loadgen.Client{
		New: func(_ context.Context, nodes report.Nodes, httpc *http.Client, _ string) (workload.KV, func(), error) {
			return &workload.AnyNode{Addrs: nodes.Addrs(), HTTP: httpc}, func() {}, nil
		},
	})
}
