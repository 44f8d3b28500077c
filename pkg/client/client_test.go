package client

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

// agree reports nil when the client routes every key as the node does, at the same epoch.
func agree(c *Client, ck *clusterkit.ClusterKit, keys int) error {
	if c.Epoch() != ck.Epoch() {
		return fmt.Errorf("client at epoch %d, %s at %d", c.Epoch(), ck.GetMyNodeID(), ck.Epoch())
	}
	for i := 0; i < keys; i++ {
		key := fmt.Sprintf("user:%d", i)
		r, err := c.Route(key)
		if err != nil {
			return err
		}
		p, err := ck.GetPartition(key)
		if err != nil {
			return err
		}
		if r.Partition != p.ID || r.Index != p.Index() || r.Epoch != p.Epoch || r.PrimaryEpoch != p.PrimaryEpoch {
			return fmt.Errorf("%q: client %s (index %d, epoch %d, primary epoch %d), node %s (index %d, epoch %d, primary epoch %d)",
				key, r.Partition, r.Index, r.Epoch, r.PrimaryEpoch, p.ID, p.Index(), p.Epoch, p.PrimaryEpoch)
		}
		want := ck.GetNodes(p)
		if len(r.Nodes) != len(want) || r.Primary().ID != ck.GetPrimary(p).ID {
			return fmt.Errorf("%q: client routes to %v, node to %v", key, r.Nodes, want)
		}
		if got := nodeIDs(r.Pending); !slices.Equal(got, p.PendingNodes) {
			return fmt.Errorf("%q: pending %v on the client, %v on the node", key, got, p.PendingNodes)
		}
		for j, n := range want {
			got := r.Nodes[j]
			if got.ID != n.ID || got.Addr != n.IP || got.Zone != n.Zone || !maps.Equal(got.Metadata, n.Metadata) {
				return fmt.Errorf("%q: holder %d is %+v on the client, %+v on the node", key, j, got, n)
			}
		}
	}
	return nil
}

func nodeIDs(ns []Node) []string {
	var ids []string
	for _, n := range ns {
		ids = append(ids, n.ID)
	}
	return ids
}

// Clients fed by any node or by etcd route thousands of keys exactly as every node does, and
// follow joins and leaves through the long poll and the watch, well within one poll's wait.
func TestRoutingAndTopologyFollowTheNodes(t *testing.T) {
	tc := newTestCluster(t)
	ck1 := tc.start("node-1")
	ck2 := tc.start("node-2")
	ck3 := tc.start("node-3")
	tc.settled(10 * time.Second)

	viaHTTP := newClient(t, Config{Seeds: []string{ck1.AdvertiseAddr()}, ClusterName: tc.name})
	viaEtcd := newClient(t, Config{Etcd: tc.etcd, ClusterName: tc.name})
	for _, c := range []*Client{viaHTTP, viaEtcd} {
		for _, ck := range []*clusterkit.ClusterKit{ck1, ck2, ck3} {
			waitFor(t, 5*time.Second, "client agrees with "+ck.GetMyNodeID(), func() error { return agree(c, ck, 5000) })
		}
		if got := nodeIDs(c.Nodes()); !slices.Equal(got, []string{"node-1", "node-2", "node-3"}) {
			t.Fatalf("Nodes() = %v", got)
		}
	}

	// A join, then the node the HTTP client polls leaves: both clients follow each map well
	// within the 20s wait of one poll, so they were told, not polling. The joiner's copies are
	// held up first: the clients list it as pending, never as a holder, until they are done.
	release := make(chan struct{})
	ck4 := tc.start("node-4", func(ck *clusterkit.ClusterKit) {
		ck.OnPartitionChange(func(_ string, _ []*clusterkit.Node, to *clusterkit.Node) {
			if to.ID == "node-4" {
				<-release
			}
		})
	})
	for _, c := range []*Client{viaHTTP, viaEtcd} {
		// Every look while waiting counts: a route to node-4 seen once fails the test, even if
		// the client moves on before the wait ends.
		var early []string
		waitFor(t, 5*time.Second, "client sees the joiner pending", func() error {
			pending := 0
			for _, k := range partitionKeys {
				r, _ := c.Route(k)
				if slices.Contains(nodeIDs(r.Nodes), "node-4") {
					early = append(early, fmt.Sprintf("%s at epoch %d", r.Partition, r.Epoch))
				}
				if slices.Contains(nodeIDs(r.Pending), "node-4") {
					pending++
				}
			}
			if err := agree(c, ck4, 2000); err != nil {
				return err
			}
			if pending == 0 {
				return errors.New("node-4 is pending nowhere")
			}
			return nil
		})
		if len(early) > 0 {
			t.Fatalf("the client routed to node-4 before its copy was done: %v", early)
		}
	}
	close(release)
	tc.settled(10 * time.Second)
	for _, c := range []*Client{viaHTTP, viaEtcd} {
		waitFor(t, 5*time.Second, "client follows the join", func() error { return agree(c, ck4, 2000) })
	}
	tc.stop("node-1")
	tc.settled(10 * time.Second)
	for _, c := range []*Client{viaHTTP, viaEtcd} {
		waitFor(t, 5*time.Second, "client follows the leave", func() error {
			if ids := nodeIDs(c.Nodes()); slices.Contains(ids, "node-1") {
				return fmt.Errorf("client still lists %v", ids)
			}
			return agree(c, ck2, 2000)
		})
	}
	// The poll moved to a node the client learned from the map (node-1 was its only seed).
	viaHTTP.pollMu.Lock()
	polled := viaHTTP.pollAddr
	viaHTTP.pollMu.Unlock()
	if polled == ck1.AdvertiseAddr() {
		t.Fatalf("the client still polls %s, which left", polled)
	}
}

// Do runs the operation on the primary and, when its port refuses connections, at once on the
// next holder; the refused node is tried last afterwards; other errors are returned as they
// are; when nothing works the error lists every attempt.
func TestDoFallback(t *testing.T) {
	tc := newTestCluster(t)
	ck1 := tc.start("node-1")
	tc.start("node-2")
	tc.start("node-3")
	tc.settled(10 * time.Second)
	c := newClient(t, Config{Seeds: []string{"127.0.0.1:1", ck1.AdvertiseAddr()}})
	waitFor(t, 5*time.Second, "client agrees", func() error { return agree(c, ck1, 100) })
	httpc := &http.Client{Transport: &http.Transport{}}
	defer httpc.CloseIdleConnections()
	ctx := context.Background()

	const key = "user:42"
	r, _ := c.Route(key)
	if len(r.Nodes) != 3 {
		t.Fatalf("route %+v: want 3 holders", r)
	}
	// tried records the nodes op ran on, and their errors.
	var tried []string
	var errs []error
	recorded := func(op func(context.Context, Node, Route) error) func(context.Context, Node, Route) error {
		tried, errs = nil, nil
		return func(ctx context.Context, n Node, r Route) error {
			err := op(ctx, n, r)
			tried, errs = append(tried, n.ID), append(errs, err)
			return err
		}
	}

	// All up: the primary only.
	if err := c.Do(ctx, key, recorded(getData(httpc))); err != nil || !slices.Equal(tried, []string{r.Nodes[0].ID}) {
		t.Fatalf("Do with every node up: %v, tried %v", err, tried)
	}
	// The primary's port is closed: the first replica, at once.
	primary := r.Primary()
	tc.closeData(primary.ID)
	if err := c.Do(ctx, key, recorded(getData(httpc))); err != nil || !slices.Equal(tried, nodeIDs(r.Nodes[:2])) {
		t.Fatalf("Do with the primary down: %v, tried %v", err, tried)
	}
	if !IsUnavailable(errs[0]) {
		t.Fatalf("the refused connection is not unavailable: %v", errs[0])
	}
	// The refused node goes last for a while: the replica directly.
	if err := c.Do(ctx, key, recorded(getData(httpc))); err != nil || !slices.Equal(tried, []string{r.Nodes[1].ID}) {
		t.Fatalf("Do right after the failure: %v, tried %v", err, tried)
	}

	// Any other error is returned as it is, without trying another node.
	errBusiness := errors.New("value too large")
	if err := c.Do(ctx, key, recorded(func(context.Context, Node, Route) error { return errBusiness })); err != errBusiness || len(tried) != 1 {
		t.Fatalf("Do with a plain error: %v, tried %v", err, tried)
	}

	// Every holder unavailable (a closed port, and two 503-like errors): one attempt each, and
	// an error that names them.
	op := func(ctx context.Context, n Node, r Route) error {
		if n.ID == primary.ID {
			return getData(httpc)(ctx, n, r)
		}
		return fmt.Errorf("503 from %s: %w", n.ID, ErrUnavailable)
	}
	err := c.Do(ctx, key, recorded(op))
	var ae *AttemptsError
	if !errors.As(err, &ae) || !errors.Is(err, ErrUnavailable) || !IsUnavailable(err) {
		t.Fatalf("Do with every holder down: %v", err)
	}
	if len(ae.Attempts) != 3 || ae.Key != key || ae.Route.Partition != r.Partition {
		t.Fatalf("attempts %+v for %q %s", ae.Attempts, ae.Key, ae.Route.Partition)
	}
	for _, n := range r.Nodes {
		if !strings.Contains(err.Error(), n.ID+" at "+n.Addr+": ") {
			t.Errorf("the error does not name %s at %s: %v", n.ID, n.Addr, err)
		}
	}
	t.Logf("every holder down: %v", err)

	// A cancelled context: no attempt, and the context's error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	err = c.Do(cctx, key, recorded(getData(httpc)))
	if !errors.As(err, &ae) || !errors.Is(err, context.Canceled) || IsUnavailable(err) || len(tried) != 0 {
		t.Fatalf("Do with a cancelled context: %v, tried %v", err, tried)
	}

	// A failure of the node the client polls moves the poll to another node at once.
	polled := func() string {
		c.pollMu.Lock()
		defer c.pollMu.Unlock()
		return c.pollAddr
	}
	waitFor(t, 5*time.Second, "client polls a node", func() error {
		if polled() == "" {
			return errors.New("no poll waiting")
		}
		return nil
	})
	watched := polled()
	down := func(ctx context.Context, n Node, r Route) error {
		if n.Addr == watched {
			return ErrUnavailable
		}
		return nil
	}
	for _, k := range partitionKeys {
		if r, _ := c.Route(k); r.Primary().Addr == watched {
			if err := c.Do(ctx, k, down); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	waitFor(t, 5*time.Second, "the poll leaves the failed node", func() error {
		if a := polled(); a == watched || a == "" {
			return fmt.Errorf("polls %q", a)
		}
		return nil
	})

	// After Close: ErrClosed.
	c.Close()
	if _, err := c.Route(key); !errors.Is(err, ErrClosed) {
		t.Fatalf("Route after Close: %v", err)
	}
	if err := c.Do(ctx, key, getData(httpc)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Do after Close: %v", err)
	}
}
