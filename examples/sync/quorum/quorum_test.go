package quorum

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/examples/internal/store"
	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/pkg/client"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
	"github.com/clusterkit-go/clusterkit/pkg/clustertest"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }

// node is a node of the cluster with the store and this package's endpoints on one data API.
type node struct {
	id   string
	ck   *clusterkit.ClusterKit
	st   *store.Store
	srv  *http.Server
	done chan struct{}
}

// cluster is a clustertest cluster with the store and this package's endpoints on every node.
type cluster struct {
	t   *testing.T
	kit *clustertest.Cluster
	// token is the nodes' join token; none when empty.
	token string
	mu    sync.Mutex
	nodes map[string]*node
}

func newCluster(t *testing.T) *cluster {
	c := &cluster{t: t, kit: clustertest.New(t, clusterkit.Options{PartitionCount: 16}), nodes: map[string]*node{}}
	// Registered after the kit's own cleanup, so it runs first: the stores close before
	// their nodes stop.
	t.Cleanup(func() {
		for _, n := range c.nodes {
			c.shutdown(n)
		}
	})
	return c
}

// start starts node id: its store registers its hooks and its data API serves before the
// node starts, as in a program.
func (c *cluster) start(id string) *node {
	c.t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	n := &node{id: id, done: make(chan struct{})}
	o := c.kit.Options(id)
	o.Metadata = map[string]string{store.AddrKey: l.Addr().String()}
	var newErr error
	ck, err := c.kit.TryStart(o, func(ck *clusterkit.ClusterKit) {
		if n.st, newErr = store.New(ck, store.Options{Token: c.token}); newErr != nil {
			return
		}
		mux := http.NewServeMux()
		mux.Handle("/store/", n.st.Handler())
		mux.Handle("/sync/", Handler(ck, n.st))
		n.srv = &http.Server{Handler: store.RequireToken(c.token, mux)}
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
func (c *cluster) shutdown(n *node) {
	c.t.Helper()
	n.st.Close()
	c.kit.Stop(n.id)
	n.srv.Close()
	<-n.done
}

func (c *cluster) stop(id string) {
	c.t.Helper()
	c.mu.Lock()
	n := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	c.shutdown(n)
}

// Writes acknowledged by a quorum survive a join (with its copies) and a leave in the middle
// of the writes: afterwards every key reads back its last acknowledged value, from a majority
// of its holders.
func TestQuorumWritesSurviveJoinAndLeave(t *testing.T) {
	c := newCluster(t)
	first := c.start("node-1")
	c.start("node-2")
	c.start("node-3")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := client.New(ctx, client.Config{Seeds: []string{first.ck.AdvertiseAddr()}, ClusterName: c.kit.Name()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	httpc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer httpc.CloseIdleConnections()
	kv := NewKV(cl, httpc, "test-client")

	const writers, keysEach, rounds = 4, 25, 6
	acked := make([]map[string]string, writers)
	var wg sync.WaitGroup
	progress := make(chan struct{}, writers*keysEach*rounds)
	for w := 0; w < writers; w++ {
		acked[w] = map[string]string{}
		wg.Go(func() {
			for r := 0; r < rounds; r++ {
				for k := 0; k < keysEach; k++ {
					key, value := fmt.Sprintf("w%d-k%d", w, k), fmt.Sprintf("v%d", r)
					if err := kv.Set(ctx, key, value); err != nil {
						t.Errorf("Set(%s): %v", key, err)
						return
					}
					acked[w][key] = value
					progress <- struct{}{}
				}
			}
		})
	}
	// A join and a leave while the writes go on.
	for i := 0; i < writers*keysEach; i++ {
		<-progress
	}
	c.start("node-4")
	for i := 0; i < writers*keysEach; i++ {
		<-progress
	}
	c.stop("node-2")
	wg.Wait()
	kv.Close()
	if t.Failed() {
		return
	}
	for w := range acked {
		for key, want := range acked[w] {
			got, found, err := kv.Get(ctx, key)
			if err != nil || !found || got != want {
				t.Errorf("Get(%s) = %q, %v, %v; want %q", key, got, found, err, want)
			}
		}
	}
	t.Logf("%d keys, %d writes, %d rounds retried", writers*keysEach, writers*keysEach*rounds, kv.Retries.Load())
}

// A node refuses a write whose client did not know every holder: the client's map is behind.
func TestWriteFromAStaleMapIsRefused(t *testing.T) {
	c := newCluster(t)
	n := c.start("node-1")
	c.start("node-2")
	p, err := n.ck.GetPartition("k")
	if err != nil {
		t.Fatal(err)
	}
	httpc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer httpc.CloseIdleConnections()
	req := WriteRequest{
		ReplicateRequest: store.ReplicateRequest{Partition: p.ID, PrimaryEpoch: p.PrimaryEpoch, MapEpoch: p.Epoch, From: "test",
			Entries: []store.Entry{{Key: "k", Value: "v", Version: store.Version{Epoch: p.PrimaryEpoch, Seq: 1}}}},
		Targets: []string{"node-1"},
	}
	err = store.Call(context.Background(), httpc, http.MethodPost, n.ck.GetPrimary(p).Metadata[store.AddrKey], WritePath, nil, req, nil)
	var ae *store.APIError
	if !errors.As(err, &ae) || ae.Code != CodeMapChanged {
		t.Fatalf("write that misses node-2: %v, want %s", err, CodeMapChanged)
	}
	req.Targets = []string{"node-1", "node-2"}
	if err := store.Call(context.Background(), httpc, http.MethodPost, n.ck.GetPrimary(p).Metadata[store.AddrKey], WritePath, nil, req, nil); err != nil {
		t.Fatalf("write to both: %v", err)
	}
}

// With a token, the quorum endpoints refuse a request without it (401, before reading it) and
// a value over the limit (413); a KV whose HTTP client sends the token writes and reads.
func TestTokenAndValueLimit(t *testing.T) {
	const token = "quorum-test-token-0123456789"
	c := newCluster(t)
	c.token = token
	n := c.start("node-1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.New(ctx, client.Config{Seeds: []string{n.ck.AdvertiseAddr()}, ClusterName: c.kit.Name()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	plain := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer plain.CloseIdleConnections()
	httpc := store.TokenClient(plain, token)
	kv := NewKV(cl, httpc, "test-client")
	defer kv.Close()
	if err := kv.Set(ctx, "k", "v"); err != nil {
		t.Fatalf("Set with the token: %v", err)
	}
	if got, found, err := kv.Get(ctx, "k"); err != nil || !found || got != "v" {
		t.Fatalf("Get with the token: %q, %v, %v; want v", got, found, err)
	}

	// Refused for want of the token or for the size, a round is not retried: Set fails at once.
	noToken := NewKV(cl, plain, "no-token")
	defer noToken.Close()
	for _, tt := range []struct {
		name  string
		kv    *KV
		value string
		want  error
	}{
		{"without the token", noToken, "v", store.ErrUnauthorized},
		{"a value over the limit", kv, strings.Repeat("x", store.DefaultMaxValueBytes+1), store.ErrTooLarge},
	} {
		short, cancelShort := context.WithTimeout(ctx, 5*time.Second)
		err := tt.kv.Set(short, "k", tt.value)
		var qe *QuorumError
		if !errors.As(err, &qe) || !errors.Is(qe.Failed["node-1"], tt.want) || short.Err() != nil {
			t.Errorf("Set %s: %v, want a refusal of node-1 (%v) at once", tt.name, err, tt.want)
		}
		cancelShort()
	}

	p, err := n.ck.GetPartition("k")
	if err != nil {
		t.Fatal(err)
	}
	write := func(value string) WriteRequest {
		return WriteRequest{
			ReplicateRequest: store.ReplicateRequest{Partition: p.ID, PrimaryEpoch: p.PrimaryEpoch, MapEpoch: p.Epoch, From: "test",
				Entries: []store.Entry{{Key: "k", Value: value, Version: store.Version{Epoch: p.PrimaryEpoch, Seq: 1}}}},
			Targets: []string{"node-1"},
		}
	}
	addr := n.ck.GetPrimary(p).Metadata[store.AddrKey]
	tests := []struct {
		name   string
		httpc  *http.Client
		path   string
		body   any
		status int
	}{
		{"write without the token", plain, WritePath, write("w"), http.StatusUnauthorized},
		{"read without the token", plain, ReadPath, ReadRequest{Key: "k", MapEpoch: p.Epoch, Targets: []string{"node-1"}}, http.StatusUnauthorized},
		{"write of a value over the limit", httpc, WritePath, write(strings.Repeat("x", store.DefaultMaxValueBytes+1)), http.StatusRequestEntityTooLarge},
		{"write of a value at the limit", httpc, WritePath, write(strings.Repeat("x", store.DefaultMaxValueBytes)), http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := store.Call(ctx, tt.httpc, http.MethodPost, addr, tt.path, nil, tt.body, nil)
			var ae *store.APIError
			switch {
			case tt.status == http.StatusOK && err != nil:
				t.Errorf("answered %v, want 200", err)
			case tt.status != http.StatusOK && (!errors.As(err, &ae) || ae.Status != tt.status):
				t.Errorf("answered %v, want %d", err, tt.status)
			}
		})
	}
}
