// Package report reads an example cluster's state over HTTP for the examples' run.sh: when the
// cluster has formed, and each node's replication and migration counters.
package report

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/clusterkit-go/clusterkit/examples/internal/store"
	"github.com/clusterkit-go/clusterkit/pkg/client"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// ClusterKit reaches the HTTP API of an example cluster's ClusterKit nodes (GET /cluster):
// plain http when TLS is nil, https trusting TLS's CA otherwise (ClusterKit's secure mode, on
// when the nodes run with a join token). The zero TLS with any HTTP client speaks plain http.
type ClusterKit struct {
	// HTTP sends the requests; with TLS set, its transport must trust TLS's CA (DialClusterKit's
	// does). Its owner closes its idle connections.
	HTTP *http.Client
	// TLS is nil without a join token; with one, the configuration for pkg/client's Config.TLS.
	TLS *tls.Config
}

// ClusterKitTLS returns the TLS configuration for the ClusterKit API of a cluster with the join
// token token: the cluster's CA, learned from the node at seed (host:port) with
// client.DiscoverCA, which the node must prove it knows the token for. With an empty token it
// returns nil: the nodes speak plain http. It blocks until seed answers or ctx ends.
func ClusterKitTLS(ctx context.Context, seed, token string) (*tls.Config, error) {
	if token == "" {
		return nil, nil
	}
	cfg, err := client.DiscoverCA(ctx, seed, token)
	if err != nil {
		return nil, fmt.Errorf("the cluster's CA: %w", err)
	}
	return cfg, nil
}

// DialClusterKit returns a ClusterKit for the nodes of a cluster with the join token token
// (none: plain http), whose CA it learns from seed (ClusterKitTLS). Its HTTP client times a
// request out after 20s; the caller closes its idle connections.
func DialClusterKit(ctx context.Context, seed, token string) (*ClusterKit, error) {
	cfg, err := ClusterKitTLS(ctx, seed, token)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	return &ClusterKit{HTTP: &http.Client{Timeout: 20 * time.Second, Transport: tr}, TLS: cfg}, nil
}

// URL returns the URL of path on the ClusterKit API at addr (host:port).
func (k *ClusterKit) URL(addr, path string) string {
	if k.TLS != nil {
		return "https://" + addr + path
	}
	return "http://" + addr + path
}

// Map returns the node at addr's answer to GET /cluster.
func (k *ClusterKit) Map(ctx context.Context, addr string) (*wire.Cluster, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.URL(addr, "/cluster"), nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	var c wire.Cluster
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return nil, fmt.Errorf("GET %s: %w", req.URL, err)
	}
	return &c, nil
}

// Settled waits until the node at ckAddr (a ClusterKit HTTP address) serves a map that lists
// exactly nodes nodes and has no copy in progress, and returns that map.
func Settled(ctx context.Context, ck *ClusterKit, ckAddr string, nodes int) (*wire.Cluster, error) {
	return WaitMap(ctx, ck, ckAddr, func(c *wire.Cluster) error {
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
func WaitMap(ctx context.Context, ck *ClusterKit, ckAddr string, cond func(*wire.Cluster) error) (*wire.Cluster, error) {
	var last error
	for {
		c, err := ck.Map(ctx, ckAddr)
		if err == nil {
			err = cond(c)
		}
		if err == nil {
			return c, nil
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
