package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
	"github.com/clusterkit-go/clusterkit/pkg/clustertest"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }

// testNode is one node of the cluster with its store, served on a real listener.
type testNode struct {
	id   string
	ck   *clusterkit.ClusterKit
	st   *Store
	addr string
	srv  *http.Server
	done chan struct{}
}

// testCluster is a clustertest cluster with a store on every node: it adds each node's store
// and data API, and an HTTP client that calls them as a client of the store would.
type testCluster struct {
	t    *testing.T
	kit  *clustertest.Cluster
	mode Mode
	// token is the nodes' join token (none when empty); httpc sends it.
	token string
	httpc *http.Client
	mu    sync.Mutex
	nodes map[string]*testNode
}

func newTestCluster(t *testing.T, mode Mode) *testCluster {
	c := &testCluster{
		t: t, kit: clustertest.New(t, clusterkit.Options{PartitionCount: 16}), mode: mode, nodes: map[string]*testNode{},
		httpc: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}},
	}
	// Registered after the kit's own cleanup, so it runs first: the stores close before
	// their nodes stop.
	t.Cleanup(func() {
		c.mu.Lock()
		nodes := c.nodes
		c.nodes = nil
		c.mu.Unlock()
		for _, n := range nodes {
			c.shutdown(n)
		}
		c.httpc.CloseIdleConnections()
	})
	return c
}

func (c *testCluster) start(id string) *testNode {
	c.t.Helper()
	return c.startWith(id, Options{Replication: c.mode, Token: c.token})
}

// startWith starts node id with a store made with opts: the store registers its hooks and
// its data API serves before the node starts, as in a program.
func (c *testCluster) startWith(id string, opts Options) *testNode {
	c.t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	n := &testNode{id: id, addr: l.Addr().String(), done: make(chan struct{})}
	o := c.kit.Options(id)
	o.Metadata = map[string]string{AddrKey: n.addr}
	var newErr error
	ck, err := c.kit.TryStart(o, func(ck *clusterkit.ClusterKit) {
		if n.st, newErr = New(ck, opts); newErr != nil {
			return
		}
		n.srv = &http.Server{Handler: n.st.Handler()}
		go func() { defer close(n.done); n.srv.Serve(l) }()
	})
	if err == nil && newErr != nil {
		c.kit.Stop(id)
		l.Close()
		c.t.Fatalf("start %s: %v", id, newErr)
	}
	if err != nil {
		if n.st != nil {
			n.st.Close()
			n.srv.Close()
			<-n.done
		} else {
			l.Close()
		}
		c.t.Fatalf("start %s: %v", id, err)
	}
	n.ck = ck
	c.mu.Lock()
	c.nodes[id] = n
	c.mu.Unlock()
	return n
}

// shutdown closes the store, stops the node and stops serving, in the order a program does.
func (c *testCluster) shutdown(n *testNode) {
	c.t.Helper()
	n.st.Close()
	c.kit.Stop(n.id)
	n.srv.Close()
	<-n.done
}

func (c *testCluster) stopNode(id string) {
	c.t.Helper()
	c.mu.Lock()
	n := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	c.shutdown(n)
}

func (c *testCluster) list() []*testNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Collect(maps.Values(c.nodes))
}

func (c *testCluster) any() *testNode { return c.list()[0] }

// put writes through the partition's primary as a client would: it re-routes and retries
// until the write is acknowledged.
func (c *testCluster) put(key, value string) (Entry, error) {
	var last error
	for range 500 {
		n := c.any()
		p, err := n.ck.GetPartition(key)
		if err == nil {
			primary := n.ck.GetPrimary(p)
			var e Entry
			if last = Call(context.Background(), c.httpc, http.MethodPost, primary.Metadata[AddrKey], "/store/put", nil,
				PutRequest{Key: key, Value: value}, &e); last == nil {
				return e, nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return Entry{}, fmt.Errorf("put %s: %w", key, last)
}

// checkAll asserts that every key's primary serves its latest value and that every holder of
// its partition stores that version.
func (c *testCluster) checkAll(want map[string]Entry) {
	c.t.Helper()
	nodes := map[string]*testNode{}
	for _, n := range c.list() {
		nodes[n.id] = n
	}
	view := c.any().ck
	bad := 0
	for key, w := range want {
		p, _ := view.GetPartition(key)
		for i, h := range view.GetNodes(p) {
			var got Entry
			var err error
			if i == 0 {
				got, err = GetAt(context.Background(), c.httpc, h.Metadata[AddrKey], key, false)
			} else {
				got, err = GetAt(context.Background(), c.httpc, h.Metadata[AddrKey], key, true)
			}
			if err != nil || got != w {
				if bad++; bad <= 10 {
					c.t.Errorf("%s on %s (holder %d of %s): got %+v, %v; want %+v", key, h.ID, i, p.ID, got, err, w)
				}
			}
		}
	}
	if bad > 0 {
		c.t.Errorf("%d of %d copies wrong", bad, len(want))
	}
}

// A node that joins during writes copies its partitions in from every holder while the writes
// go on; afterwards every holder of every key has its last acknowledged version, and the
// holders the newcomer replaced have dropped their copies.
func TestJoinDuringWrites(t *testing.T) {
	for _, mode := range []Mode{Sync, Async} {
		t.Run(mode.String(), func(t *testing.T) {
			c := newTestCluster(t, mode)
			for _, id := range []string{"node-1", "node-2", "node-3"} {
				c.start(id)
			}
			c.kit.WaitConverged(30 * time.Second)

			want := map[string]Entry{}
			var mu sync.Mutex
			write := func(round int) {
				for i := range 150 {
					key := fmt.Sprintf("key-%d", i)
					e, err := c.put(key, fmt.Sprintf("v%d-%d", round, i))
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					want[key] = e
					mu.Unlock()
				}
			}
			write(0)
			// Keep writing while node-4 joins and copies its partitions in.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for round := 1; round < 50; round++ {
					select {
					case <-stop:
						return
					default:
					}
					write(round)
				}
			})
			joined := c.start("node-4")
			c.kit.WaitConverged(30 * time.Second)
			close(stop)
			wg.Wait()
			if mode == Async {
				for _, n := range c.list() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					if err := n.st.Flush(ctx); err != nil {
						t.Fatalf("%s: %v", n.id, err)
					}
					cancel()
				}
			}
			c.checkAll(want)

			st := joined.st.Stats()
			if st.PartitionsCopiedIn == 0 || st.KeysCopiedIn == 0 {
				t.Errorf("node-4 copied in %d partitions, %d keys; want some of each", st.PartitionsCopiedIn, st.KeysCopiedIn)
			}
			released, keys, handedOver := int64(0), 0, int64(0)
			for _, n := range c.list() {
				s := n.st.Stats()
				released += s.PartitionsReleased
				keys += s.Keys
				handedOver += s.HandedOver
			}
			t.Logf("writes handed over to a new primary: %d", handedOver)
			if released == 0 {
				t.Error("no node released a partition after node-4 joined")
			}
			// Each key is kept by exactly its three holders: copies handed away were dropped.
			if keys != 3*len(want) {
				t.Errorf("%d copies of %d keys stored, want %d", keys, len(want), 3*len(want))
			}
			t.Logf("node-4: %+v", st)
		})
	}
}

// When a primary leaves, a surviving holder is promoted at a higher primary epoch: it has every
// acknowledged write, and the replicas refuse writes stamped with the old primary's epoch.
func TestPrimaryLeavesAndStaleEpochIsRefused(t *testing.T) {
	c := newTestCluster(t, Sync)
	for _, id := range []string{"node-1", "node-2", "node-3", "node-4"} {
		c.start(id)
	}
	c.kit.WaitConverged(30 * time.Second)
	want := map[string]Entry{}
	for i := range 100 {
		key := fmt.Sprintf("key-%d", i)
		e, err := c.put(key, fmt.Sprintf("v-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		want[key] = e
	}

	// Pick a key led by node-2, which leaves.
	view := c.nodes["node-1"].ck
	var key string
	for k := range want {
		if p, _ := view.GetPartition(k); view.GetPrimary(p).ID == "node-2" {
			key = k
			break
		}
	}
	if key == "" {
		t.Fatal("node-2 leads none of the keys")
	}
	old := want[key]
	c.stopNode("node-2")
	c.kit.WaitConverged(30 * time.Second)
	c.checkAll(want)

	p, _ := view.GetPartition(key)
	if p.PrimaryEpoch <= old.Version.Epoch {
		t.Fatalf("%s still at primary epoch %d after its primary left", p.ID, p.PrimaryEpoch)
	}
	// node-2's late write, stamped with its old epoch, reaches a current replica.
	replica := c.nodes[view.GetReplicas(p)[0].ID]
	late := ReplicateRequest{Partition: p.ID, PrimaryEpoch: old.Version.Epoch, MapEpoch: view.Epoch(), From: "node-2",
		Entries: []Entry{{Key: key, Value: "late", Version: Version{Epoch: old.Version.Epoch, Seq: old.Version.Seq + 1}}}}
	err := Call(context.Background(), c.httpc, http.MethodPost, replica.addr, "/store/replicate", nil, late, nil)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict || !errors.Is(err, ErrStaleEpoch) {
		t.Fatalf("stale write answered %v, want 409 stale_epoch", err)
	}
	if got, _ := replica.st.Local(key); got != want[key] {
		t.Errorf("after the refused write the replica holds %+v, want %+v", got, want[key])
	}
	if replica.st.Stats().StaleEpochRefused == 0 {
		t.Error("stale_epoch_refused not counted")
	}

	// The new primary adopts the old primary's undelivered writes: a key it has written since
	// keeps its newer value, a key it lacks is stored and replicated under its own epoch.
	primary := c.nodes[view.GetPrimary(p).ID]
	if want[key], err = c.put(key, "newer"); err != nil {
		t.Fatal(err)
	}
	var fresh string
	for i := 0; fresh == ""; i++ {
		if k := fmt.Sprintf("fresh-%d", i); func() bool { q, _ := view.GetPartition(k); return q.ID == p.ID }() {
			fresh = k
		}
	}
	late.Entries = append(late.Entries, Entry{Key: fresh, Value: "adopted", Version: Version{Epoch: old.Version.Epoch, Seq: 1}})
	if err := Call(context.Background(), c.httpc, http.MethodPost, primary.addr, "/store/adopt", nil, late, nil); err != nil {
		t.Fatalf("adopt on the new primary: %v", err)
	}
	for _, h := range view.GetNodes(p) {
		n := c.nodes[h.ID]
		if got, _ := n.st.Local(key); got != want[key] {
			t.Errorf("after adoption %s holds %+v, want the newer %+v", h.ID, got, want[key])
		}
		if got, ok := n.st.Local(fresh); !ok || got.Value != "adopted" {
			t.Errorf("after adoption %s holds %+v for %s, want the adopted value", h.ID, got, fresh)
		}
	}
	if err := Call(context.Background(), c.httpc, http.MethodPost, replica.addr, "/store/adopt", nil, late, nil); !errors.Is(err, ErrNotPrimary) {
		t.Errorf("adopt on a replica: %v, want not_primary", err)
	}

	// A replica refuses a primary write and names the primary.
	var np *NotPrimaryError
	if _, err := replica.st.Put(context.Background(), key, "x"); !errors.As(err, &np) || np.Primary != view.GetPrimary(p).ID {
		t.Errorf("Put on a replica: %v, want a NotPrimaryError naming %s", err, view.GetPrimary(p).ID)
	}
	err = Call(context.Background(), c.httpc, http.MethodPost, replica.addr, "/store/put", nil, PutRequest{Key: key, Value: "x"}, nil)
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusMisdirectedRequest || apiErr.Primary != view.GetPrimary(p).ID {
		t.Errorf("POST /store/put on a replica answered %v, want 421 not_primary naming the primary", err)
	}
}

// Malformed requests get 400 and a message naming the problem.
func TestBadRequests(t *testing.T) {
	c := newTestCluster(t, Sync)
	n := c.start("node-1")
	p, _ := n.ck.GetPartition("a")
	tests := []struct {
		name, method, path string
		body               any
		want               string
	}{
		{"put without key", http.MethodPost, "/store/put", map[string]string{"value": "v"}, "non-empty \"key\""},
		{"put with unknown field", http.MethodPost, "/store/put", map[string]string{"key": "k", "vale": "v"}, "unknown field"},
		{"get without key", http.MethodGet, "/store/get", nil, "non-empty key"},
		{"export of an unknown partition", http.MethodGet, "/store/export?partition=partition-99&min_epoch=0", nil, "unknown partition"},
		{"export without epoch", http.MethodGet, "/store/export?partition=partition-1", nil, "min_epoch"},
		{"replicate a key of another partition", http.MethodPost, "/store/replicate",
			ReplicateRequest{Partition: "partition-99", PrimaryEpoch: 1, Entries: []Entry{{Key: "a"}}}, "is not in partition-99"},
		{"replicate without epoch", http.MethodPost, "/store/replicate", ReplicateRequest{Partition: p.ID, Entries: []Entry{{Key: "a"}}}, "primary_epoch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Call(context.Background(), c.httpc, tt.method, n.addr, tt.path, nil, tt.body, nil)
			var apiErr *APIError
			if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || !strings.Contains(apiErr.Message, tt.want) {
				t.Errorf("answered %v, want 400 mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := GetAt(context.Background(), c.httpc, n.addr, "never-written", false); !errors.Is(err, ErrNotFound) {
		t.Errorf("get of a missing key: %v, want not_found", err)
	}
}

func TestVersionOrder(t *testing.T) {
	tests := []struct {
		a, b Version
		less bool
	}{
		{Version{1, 5}, Version{1, 6}, true},
		{Version{1, 6}, Version{1, 5}, false},
		{Version{1, 900}, Version{2, 1}, true}, // a newer primary wins whatever the counters
		{Version{2, 1}, Version{1, 900}, false},
		{Version{3, 3}, Version{3, 3}, false},
	}
	for _, tt := range tests {
		if got := tt.a.Less(tt.b); got != tt.less {
			t.Errorf("%v.Less(%v) = %v, want %v", tt.a, tt.b, got, tt.less)
		}
	}
}

// gate holds back the requests to one path until it is opened.
type gate struct {
	path   string
	opened chan struct{}
}

func (g *gate) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == g.path {
		select {
		case <-g.opened:
		case <-r.Context().Done():
			return nil, r.Context().Err()
		}
	}
	return http.DefaultTransport.RoundTrip(r)
}

// Async: writes a primary acknowledged and still had queued when a join moved its primary role
// away are refused by the replicas (stale epoch); the old primary hands them to the new primary,
// which adopts them, so that every holder ends up with them.
func TestAsyncQueueHandedOverWhenThePrimaryMoves(t *testing.T) {
	c := newTestCluster(t, Async)
	g := &gate{path: "/store/replicate", opened: make(chan struct{})}
	a := c.startWith("node-1", Options{Replication: Async, HTTPClient: &http.Client{Transport: g, Timeout: 30 * time.Second}})
	c.start("node-2")
	c.start("node-3")
	c.kit.WaitConverged(30 * time.Second)

	// One key in every partition node-1 leads; node-1's sends to replicas are held back.
	want := map[string]Entry{}
	led := map[string]bool{}
	for i := 0; len(led) < a.st.Stats().Primaries; i++ {
		key := fmt.Sprintf("key-%d", i)
		p, _ := a.ck.GetPartition(key)
		if !a.ck.IsPrimary(p) || led[p.ID] {
			continue
		}
		e, err := a.st.Put(context.Background(), key, "v")
		if err != nil {
			t.Fatal(err)
		}
		want[key], led[p.ID] = e, true
	}
	before := map[string]string{}
	for key := range want {
		p, _ := a.ck.GetPartition(key)
		before[key] = a.ck.GetPrimary(p).ID
	}
	c.start("node-4")
	c.kit.WaitConverged(30 * time.Second)
	moved := 0
	for key := range want {
		p, _ := a.ck.GetPartition(key)
		if a.ck.GetPrimary(p).ID != before[key] {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("node-4's join moved none of node-1's primaries: nothing to hand over")
	}
	close(g.opened)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, n := range c.list() {
		if err := n.st.Flush(ctx); err != nil {
			t.Fatalf("%s: %v", n.id, err)
		}
	}
	c.checkAll(want)
	st := a.st.Stats()
	if st.HandedOver == 0 {
		t.Errorf("node-1 handed nothing over after %d of its primaries moved: %+v", moved, st)
	}
	t.Logf("%d primaries moved; node-1 handed %d writes over, replication failures %d", moved, st.HandedOver, st.ReplicationFailures)
}
