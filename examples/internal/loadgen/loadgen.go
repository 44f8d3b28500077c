// Package loadgen is the command line the examples' load generators share; run.sh uses its
// four subcommands:
//
//	wait  -cluster 127.0.0.1:8080 -n 8 [-since ms]    wait until the cluster has formed
//	run   -nodes 127.0.0.1:9080,... -ops 1000         run operations, print throughput and latency
//	check -nodes ... -state state.json                read back every acknowledged write
//	stats -nodes node-1=127.0.0.1:9080,...            print each node's store counters
//
// run exits with status 1 if an operation failed or a read returned a stale value; check exits
// with status 1 if a key does not hold its latest acknowledged value. How run and check reach
// the cluster is the example's: its Client. Every request carries the cluster's join token,
// from -token or $JOIN_TOKEN, when there is one; with it, the nodes' ClusterKit API (wait's
// -cluster, the sync and async clients' -seeds) runs in secure mode and is reached over https,
// trusting only the cluster's CA (report.ClusterKitTLS).
package loadgen

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/clusterkit-go/clusterkit/examples/internal/report"
	"github.com/clusterkit-go/clusterkit/examples/internal/store"
	"github.com/clusterkit-go/clusterkit/examples/internal/workload"
)

// Client is how an example's load generator reaches the cluster in run and check.
type Client struct {
	// Flags adds the client's own flags; nil for none.
	Flags func(fs *flag.FlagSet)
	// New builds the KV once the flags are parsed; nodes is the -nodes list, httpc sends the
	// cluster's join token token (none: empty), with which the nodes' ClusterKit API speaks
	// https (report.ClusterKitTLS). The returned function releases what New started.
	New func(ctx context.Context, nodes report.Nodes, httpc *http.Client, token string) (workload.KV, func(), error)
}

// Main runs the command named by args[1] and exits.
func Main(args []string, c Client) {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: "+args[0]+" wait|run|check|stats [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(args[0]+" "+args[1], flag.ExitOnError)
	nodes := fs.String("nodes", "", "data API addresses of the nodes, comma-separated (name=host:port or host:port)")
	token := fs.String("token", "", "the cluster's join token, sent as \"Authorization: Bearer <token>\" (default $"+store.TokenEnv+")")
	if c.Flags != nil && (args[1] == "run" || args[1] == "check") {
		c.Flags(fs)
	}
	// httpc carries the token, so it is made once the flags are parsed, by parse.
	var httpc *http.Client
	var tok string
	parse := func() {
		fs.Parse(args[2:])
		var err error
		tok, err = store.ResolveToken(*token)
		if err != nil {
			fail(err)
		}
		httpc = store.TokenClient(&http.Client{Timeout: 20 * time.Second}, tok)
	}
	newKV := func(ctx context.Context) (workload.KV, func()) {
		ns, err := report.ParseNodes(*nodes)
		if err != nil {
			fail(err)
		}
		kv, closeKV, err := c.New(ctx, ns, httpc, tok)
		if err != nil {
			fail(err)
		}
		return kv, closeKV
	}
	switch args[1] {
	case "wait":
		ckAddr := fs.String("cluster", "", "ClusterKit HTTP address of a node")
		n := fs.Int("n", 0, "number of nodes the cluster must list")
		timeout := fs.Duration("timeout", time.Minute, "give up after this long")
		since := fs.Int64("since", 0, "Unix time in milliseconds when the first node was started: the formation time is measured from it")
		parse()
		start := time.Now()
		if *since > 0 {
			start = time.UnixMilli(*since)
		}
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		defer cancel()
		ck, err := report.DialClusterKit(ctx, *ckAddr, tok)
		if err != nil {
			fail(err)
		}
		c, err := report.Settled(ctx, ck, *ckAddr, *n)
		if err != nil {
			fail(err)
		}
		took := fmt.Sprintf("settled after %v", time.Since(start).Round(time.Millisecond))
		if *since > 0 {
			took = fmt.Sprintf("formed %v after the first node was started", time.Since(start).Round(time.Millisecond))
		}
		fmt.Printf("cluster: %d nodes, %d partitions, map epoch %d, leader %s, no copy in progress; %s\n",
			len(c.Cluster.Nodes), len(c.Cluster.PartitionMap), c.Cluster.Epoch, c.Cluster.Leader, took)
	case "run":
		var cfg workload.Config
		fs.IntVar(&cfg.Ops, "ops", 1000, "operations")
		fs.IntVar(&cfg.Keys, "keys", 200, "distinct keys")
		fs.StringVar(&cfg.Prefix, "prefix", "key-", "key prefix")
		fs.IntVar(&cfg.Concurrency, "concurrency", 8, "concurrent clients")
		fs.Float64Var(&cfg.Rate, "rate", 0, "operations per second, all clients together (0: as fast as they go)")
		fs.IntVar(&cfg.ReadEvery, "read-every", 5, "every n-th operation of a client is a read (0: writes only)")
		fs.DurationVar(&cfg.OpTimeout, "op-timeout", 30*time.Second, "bound on one operation, retries included")
		state := fs.String("state", "", "write the acknowledged values to this file, for check")
		parse()
		kv, closeKV := newKV(context.Background())
		res := workload.Run(context.Background(), kv, cfg)
		closeKV()
		fmt.Println(res.Summary())
		if *state != "" {
			if err := workload.SaveState(*state, res.State); err != nil {
				fail(err)
			}
		}
		if res.Errors > 0 || res.StaleReads > 0 {
			os.Exit(1)
		}
	case "check":
		state := fs.String("state", "", "file written by run -state")
		parse()
		st, err := workload.LoadState(*state)
		if err != nil {
			fail(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		kv, closeKV := newKV(ctx)
		bad := workload.Check(ctx, kv, st)
		closeKV()
		fmt.Printf("checked %d keys: %d hold their last acknowledged value, %d do not\n", len(st), len(st)-len(bad), len(bad))
		for i, b := range bad {
			if i == 10 {
				fmt.Printf("  ... and %d more\n", len(bad)-10)
				break
			}
			fmt.Println("  " + b)
		}
		if len(bad) > 0 {
			os.Exit(1)
		}
	case "stats":
		parse()
		ns, err := report.ParseNodes(*nodes)
		if err != nil {
			fail(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		report.WriteStats(ctx, os.Stdout, httpc, ns)
		// The routing counters of the server-side example's nodes.
		var sum map[string]int64
		for _, n := range ns {
			var st map[string]int64
			if store.Call(ctx, httpc, http.MethodGet, n.KVAddr, "/kv/stats", nil, nil, &st) != nil {
				continue
			}
			if sum == nil {
				sum = map[string]int64{}
			}
			for k, v := range st {
				sum[k] += v
			}
		}
		if sum != nil {
			fmt.Printf("client requests (counted by the nodes still running): %d served by their primary, %d of them forwarded there by the node that received them; %d retries while a primary was unreachable or had just changed\n",
				sum["served_as_primary"], sum["forwarded"], sum["retries"])
		}
	default:
		fmt.Fprintf(os.Stderr, "unknown subcommand %q: want wait, run, check or stats\n", args[1])
		os.Exit(2)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, os.Args[0]+":", err)
	os.Exit(1)
}
