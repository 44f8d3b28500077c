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
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	url := "http://" + base + "/cluster"
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
