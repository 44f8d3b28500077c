// Package report reads an example cluster's state over HTTP for the examples' run.sh: when the
// cluster has formed, and each node's replication and migration counters.
package report

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/clusterkit-go/clusterkit/examples/internal/store"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// Settled waits until the node at ckAddr (a ClusterKit HTTP address) serves a map that lists
// exactly nodes nodes and has no copy in progress, and returns that map.
func Settled(ctx context.Context, httpc *http.Client, ckAddr string, nodes int) (*wire.Cluster, error) {
	return WaitMap(ctx, httpc, ckAddr, func(c *wire.Cluster) error {
		switch {
		case len(c.Cluster.Nodes) != nodes:
			return fmt.Errorf("%d nodes listed, want %d", len(c.Cluster.Nodes), nodes)
		case len(c.Cluster.Handoffs) > 0:
			return fmt.Errorf("%d copies in progress", len(c.Cluster.Handoffs))
		}
		return nil
	})
}

// WaitMap polls GET /cluster on the node at ckAddr every 50ms until cond accepts the map, and
// returns that map; it fails when ctx ends first, with cond's last answer.
func WaitMap(ctx context.Context, httpc *http.Client, ckAddr string, cond func(*wire.Cluster) error) (*wire.Cluster, error) {
	var last error
	for {
		var c wire.Cluster
		err := store.Call(ctx, httpc, http.MethodGet, ckAddr, "/cluster", nil, nil, &c)
		if err == nil {
			err = cond(&c)
		}
		if err == nil {
			return &c, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("map of %s: %v", ckAddr, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Without returns a WaitMap condition: the map no longer lists node id.
func Without(id string) func(*wire.Cluster) error {
	return func(c *wire.Cluster) error {
		if _, ok := c.Cluster.Nodes[id]; ok {
			return fmt.Errorf("epoch %d still lists %s", c.Cluster.Epoch, id)
		}
		return nil
	}
}

// Nodes are the nodes of a report: name and data API address.
type Nodes []struct{ Name, KVAddr string }

// ParseNodes reads "name=host:port,..." (or bare "host:port,...", named by position).
func ParseNodes(s string) (Nodes, error) {
	var out Nodes
	for i, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		name, addr, ok := strings.Cut(f, "=")
		if !ok {
			name, addr = fmt.Sprintf("#%d", i+1), f
		}
		out = append(out, struct{ Name, KVAddr string }{name, addr})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no nodes in %q", s)
	}
	return out, nil
}

// Addrs returns the data API addresses.
func (ns Nodes) Addrs() []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.KVAddr
	}
	return out
}

// WriteStats writes one line of store counters per node (a node that does not answer is shown
// as down) and the totals.
func WriteStats(ctx context.Context, w io.Writer, httpc *http.Client, nodes Nodes) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\tprimaries\treplicas\tkeys\twrites as primary\treplica writes stored\treplication failures\thanded over\tpartitions copied in\tkeys copied in\tpartitions released\t")
	var sum store.Stats
	for _, n := range nodes {
		st, err := store.StatsAt(ctx, httpc, n.KVAddr)
		if err != nil {
			fmt.Fprintf(tw, "%s\tdown\t\t\t\t\t\t\t\t\t\t\n", n.Name)
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", st.NodeID, st.Primaries, st.Replicas, st.Keys,
			st.PrimaryWrites, st.ReplicaApplied, st.ReplicationFailures, st.HandedOver, st.PartitionsCopiedIn, st.KeysCopiedIn, st.PartitionsReleased)
		sum.Primaries += st.Primaries
		sum.Replicas += st.Replicas
		sum.Keys += st.Keys
		sum.PrimaryWrites += st.PrimaryWrites
		sum.ReplicaApplied += st.ReplicaApplied
		sum.ReplicationFailures += st.ReplicationFailures
		sum.HandedOver += st.HandedOver
		sum.PartitionsCopiedIn += st.PartitionsCopiedIn
		sum.KeysCopiedIn += st.KeysCopiedIn
		sum.PartitionsReleased += st.PartitionsReleased
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", sum.Primaries, sum.Replicas, sum.Keys,
		sum.PrimaryWrites, sum.ReplicaApplied, sum.ReplicationFailures, sum.HandedOver, sum.PartitionsCopiedIn, sum.KeysCopiedIn, sum.PartitionsReleased)
	tw.Flush()
}
