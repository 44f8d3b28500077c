package clusterkit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
	"github.com/clusterkit-go/clusterkit/pkg/clustertest"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

type pollAnswer struct {
	code int
	etag string
	body []byte
	err  error
}

// poll sends GET /cluster with a wait and a tag, bounded by within.
func poll(base, wait, tag string, within time.Duration) pollAnswer {
	return pollPath(base, "/cluster", wait, tag, within)
}

// pollPath sends GET path with a wait and a tag, bounded by within.
func pollPath(base, path, wait, tag string, within time.Duration) pollAnswer {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	url := "http://" + base + path
	if wait != "" {
		url += "?wait=" + wait
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return pollAnswer{err: err}
	}
	if tag != "" {
		req.Header.Set("If-None-Match", tag)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return pollAnswer{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return pollAnswer{code: resp.StatusCode, etag: resp.Header.Get("ETag"), body: body, err: err}
}

// GET /cluster?wait= blocks until the node holds another map, answers 304 when the wait passes
// without one, refuses a malformed wait, and lets go of the client when the node stops.
func TestClusterLongPoll(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16})
	c.Add("node-1")
	ck2 := c.Add("node-2")
	c.WaitConverged(10 * time.Second)
	addr := ck2.AdvertiseAddr()

	first := poll(addr, "", "", 5*time.Second)
	if first.err != nil || first.code != http.StatusOK || first.etag == "" {
		t.Fatalf("GET /cluster: %d %q %v", first.code, first.etag, first.err)
	}
	for _, bad := range []string{"soon", "-1s", "30"} {
		a := poll(addr, bad, first.etag, 5*time.Second)
		if a.err != nil || a.code != http.StatusBadRequest || !strings.Contains(string(a.body), "wait") {
			t.Errorf("wait=%s: %d %s %v, want 400 naming the parameter", bad, a.code, a.body, a.err)
		}
	}
	// A tag the node no longer has, or no tag: the map at once, whatever the wait.
	if a := poll(addr, "30s", `"other-1"`, 5*time.Second); a.err != nil || a.code != http.StatusOK || a.etag != first.etag {
		t.Fatalf("poll with a stale tag: %d %q %v", a.code, a.etag, a.err)
	}
	if a := poll(addr, "30s", "", 5*time.Second); a.err != nil || a.code != http.StatusOK {
		t.Fatalf("poll without a tag: %d %v", a.code, a.err)
	}
	// The current tag and no change: 304 once the wait has passed, not before.
	began := time.Now()
	if a := poll(addr, "300ms", first.etag, 5*time.Second); a.err != nil || a.code != http.StatusNotModified || a.etag != first.etag {
		t.Fatalf("poll without a change: %d %q %v", a.code, a.etag, a.err)
	}
	if d := time.Since(began); d < 300*time.Millisecond {
		t.Fatalf("poll answered 304 after %v, before its wait of 300ms", d)
	}

	// A join during the poll: the new map, well before the wait (the request is bounded far
	// below it, so a poll that sat out its 30s fails).
	done := make(chan pollAnswer, 1)
	go func() { done <- poll(addr, "30s", first.etag, 20*time.Second) }()
	time.Sleep(100 * time.Millisecond) // let the poll reach its wait; a later start only makes it trivial
	c.Add("node-3")
	a := <-done
	if a.err != nil || a.code != http.StatusOK || a.etag == first.etag {
		t.Fatalf("poll across a join: %d %q %v", a.code, a.etag, a.err)
	}
	var got wire.Cluster
	if err := json.Unmarshal(a.body, &got); err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Cluster.Nodes["node-3"]; !ok || !strings.HasSuffix(a.etag, fmt.Sprintf(`-%d"`, got.Cluster.Epoch)) {
		t.Fatalf("poll answered epoch %d with nodes %v", got.Cluster.Epoch, got.Cluster.Nodes)
	}

	// A node that stops answers its pollers at once, so that they move to another node.
	c.WaitConverged(10 * time.Second)
	tag := poll(addr, "", "", 5*time.Second).etag
	go func() { done <- poll(addr, "30s", tag, 20*time.Second) }()
	time.Sleep(100 * time.Millisecond)
	c.Kill("node-2")
	if a := <-done; a.err == nil && a.code != http.StatusServiceUnavailable {
		t.Fatalf("poll of a stopping node: %d %s", a.code, a.body)
	} else if a.err != nil && strings.Contains(a.err.Error(), "deadline") {
		t.Fatalf("poll of a stopping node was not let go: %v", a.err)
	}
}

// The long poll outlives the server's WriteTimeout: it extends the write deadline past its wait.
func TestClusterLongPollOutlivesWriteTimeout(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16})
	ck := c.Add("node-1")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: ck.Handler(), WriteTimeout: 200 * time.Millisecond}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(l) }()
	defer func() { srv.Close(); <-served }()
	tag := poll(l.Addr().String(), "", "", 5*time.Second).etag
	if a := poll(l.Addr().String(), "700ms", tag, 5*time.Second); a.err != nil || a.code != http.StatusNotModified {
		t.Fatalf("a 700ms poll behind a 200ms WriteTimeout: %d %v", a.code, a.err)
	}
}

// Every node follows the operators' actions under admin/: GET /cluster and /cluster/nodes show
// each node's weight and state from them, a change of them changes the ETag and wakes the long
// polls of both, an invalid record is skipped, and once the actions are gone the ETag is the
// map's alone again.
func TestClusterLongPollAdmin(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16})
	c.Add("node-1")
	ck2 := c.Add("node-2")
	c.WaitConverged(10 * time.Second)
	addr := ck2.AdvertiseAddr()
	s := keys.New(c.Name())
	put := func(key, value string) {
		t.Helper()
		if _, err := c.Etcd().Put(context.Background(), key, value); err != nil {
			t.Fatal(err)
		}
	}
	decode := func(a pollAnswer) wire.Cluster {
		t.Helper()
		if a.err != nil || a.code != http.StatusOK {
			t.Fatalf("GET /cluster: %d %s %v", a.code, a.body, a.err)
		}
		var doc wire.Cluster
		if err := json.Unmarshal(a.body, &doc); err != nil {
			t.Fatal(err)
		}
		return doc
	}
	first := poll(addr, "", "", 5*time.Second)
	doc := decode(first)
	for id, n := range doc.Cluster.Nodes {
		if n.Weight != 1 || n.State != "" || len(doc.Cluster.Maintenance) != 0 {
			t.Fatalf("%s: weight %d, state %q, maintenance %v; want 1, none, none", id, n.Weight, n.State, doc.Cluster.Maintenance)
		}
	}
	if want := fmt.Sprintf(`"%s-%d"`, doc.Cluster.ID, doc.Cluster.Epoch); first.etag != want {
		t.Fatalf("ETag %s without operators' actions, want the map's %s", first.etag, want)
	}

	// A cordon during the poll: the poll answers with it, under another tag.
	done := make(chan pollAnswer, 1)
	go func() { done <- poll(addr, "30s", first.etag, 20*time.Second) }()
	time.Sleep(100 * time.Millisecond) // let the poll reach its wait; a later start only makes it trivial
	put(s.Admin(state.AdminCordon, "node-1"), `{"kind":"cordon","node":"node-1","at":"2026-01-02T03:04:05Z"}`)
	cordoned := <-done
	doc = decode(cordoned)
	if n := doc.Cluster.Nodes["node-1"]; n.State != "cordoned" || cordoned.etag == first.etag {
		t.Fatalf("poll across a cordon: node-1 %+v, ETag %s (before %s)", n, cordoned.etag, first.etag)
	}

	// GET /cluster/nodes has the same tag, and its poll wakes for a weight; an invalid weight
	// record is skipped.
	nodes := pollPath(addr, "/cluster/nodes", "", "", 5*time.Second)
	if nodes.etag != cordoned.etag {
		t.Fatalf("GET /cluster/nodes: ETag %s, GET /cluster %s", nodes.etag, cordoned.etag)
	}
	go func() { done <- pollPath(addr, "/cluster/nodes", "30s", nodes.etag, 20*time.Second) }()
	time.Sleep(100 * time.Millisecond)
	put(s.Admin(state.AdminWeight, "node-1"), `{"kind":"weight","node":"node-1","weight":0,"at":"2026-01-02T03:04:05Z"}`)
	put(s.Admin(state.AdminWeight, "node-2"), `{"kind":"weight","node":"node-2","weight":4,"at":"2026-01-02T03:04:05Z"}`)
	put(s.Admin(state.AdminMaintenance, "upgrade"), `{"kind":"maintenance","reason":"upgrade","by":"ops","at":"2026-01-02T03:04:05Z"}`)
	var nd wire.ClusterNodes
	etcdtest.WaitFor(t, 10*time.Second, "node-2 weighing 4 and the maintenance in GET /cluster/nodes", func() error {
		a := <-done
		if a.err != nil || a.code != http.StatusOK {
			return fmt.Errorf("GET /cluster/nodes: %d %s %v", a.code, a.body, a.err)
		}
		nd = wire.ClusterNodes{}
		if err := json.Unmarshal(a.body, &nd); err != nil {
			return err
		}
		if nd.Nodes["node-2"].Weight != 4 || len(nd.Maintenance) != 1 {
			// One of the records came alone: poll again from this answer.
			go func() { done <- pollPath(addr, "/cluster/nodes", "30s", a.etag, 20*time.Second) }()
			return fmt.Errorf("nodes %+v, maintenance %+v", nd.Nodes, nd.Maintenance)
		}
		return nil
	})
	if n1 := nd.Nodes["node-1"]; n1.Weight != 1 || n1.State != "cordoned" || nd.Maintenance[0].Reason != "upgrade" || nd.Maintenance[0].By != "ops" {
		t.Fatalf("GET /cluster/nodes: node-1 %+v (its weight record is invalid), maintenance %+v", n1, nd.Maintenance)
	}

	// Every action gone: the body shows none, and the ETag is the map's again.
	if _, err := c.Etcd().Delete(context.Background(), s.AdminPrefix(), clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	etcdtest.WaitFor(t, 10*time.Second, "the operators' actions gone from GET /cluster", func() error {
		a := poll(addr, "", "", 5*time.Second)
		doc := decode(a)
		if want := fmt.Sprintf(`"%s-%d"`, doc.Cluster.ID, doc.Cluster.Epoch); a.etag != want {
			return fmt.Errorf("ETag %s, want %s", a.etag, want)
		}
		if n := doc.Cluster.Nodes["node-2"]; n.Weight != 1 || doc.Cluster.Nodes["node-1"].State != "" || doc.Cluster.Maintenance != nil {
			return fmt.Errorf("nodes %+v, maintenance %+v", doc.Cluster.Nodes, doc.Cluster.Maintenance)
		}
		return nil
	})
}
