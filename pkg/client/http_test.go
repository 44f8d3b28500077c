package client

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/wiretest"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

// A node that ignores the long poll (it answers the same map at once, every time) is not
// hammered: the client pauses after an answer that brings nothing new, whether the node serves
// GET /cluster/map or only GET /cluster.
func TestPollOfANodeIgnoringTheWaitPauses(t *testing.T) {
	md5 := wiretest.HashConfig{Algorithm: "md5", Modulo: 8, Format: "partition-%d"}
	tests := []struct {
		name string
		// delta is the GET /cluster/map body, nil for a node that answers it 404.
		delta []byte
	}{
		{"GET /cluster", nil},
		{"GET /cluster/map", wiretest.FullMapBody(1, md5, 8)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var requests atomic.Int64
			body := wiretest.ClusterBody(1, md5, 8)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				w.Header().Set("ETag", `"c1-1"`)
				switch {
				case r.URL.Path == "/cluster/map" && tt.delta == nil:
					http.NotFound(w, r)
				case r.URL.Path == "/cluster/map":
					w.Write(tt.delta)
				default:
					w.Write(body)
				}
			}))
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := New(ctx, Config{Seeds: []string{strings.TrimPrefix(srv.URL, "http://")}})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond)
			c.Close()
			// The first read, one poll answered at once (after a 404 for GET /cluster/map),
			// then the pause (1s).
			if n := requests.Load(); n > 4 {
				t.Fatalf("%d requests in 500ms to a node that ignores the wait", n)
			}
		})
	}
}

// recorder is an HTTP client that records every request the client sends: path, status, and
// for GET /cluster/map answers whether they were full.
type recorder struct {
	client *http.Client
	tr     *http.Transport
	mu     sync.Mutex
	seen   []string
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{tr: &http.Transport{}}
	r.client = &http.Client{Transport: r}
	t.Cleanup(r.tr.CloseIdleConnections)
	return r
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.tr.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("%s %d", req.URL.Path, resp.StatusCode)
	if req.URL.Path == "/cluster/map" && resp.StatusCode == http.StatusOK {
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if bytes.Contains(body, []byte(`"full":true`)) {
			what += " full"
		} else {
			what += " delta"
		}
	}
	r.mu.Lock()
	r.seen = append(r.seen, what)
	r.mu.Unlock()
	return resp, nil
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}

// sameAsFullRead reports nil when the map c holds is the one a fresh GET /cluster from the
// node at addr gives: every route, node and the tag.
func sameAsFullRead(c *Client, addr string) error {
	reader := &Client{httpc: http.DefaultClient, log: zap.NewNop()}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	full, err := reader.fetch(ctx, addr, "", 0)
	if err != nil {
		return err
	}
	held := c.topo.Load()
	if held.Epoch != full.Epoch {
		return fmt.Errorf("client at epoch %d, %s at %d", held.Epoch, addr, full.Epoch)
	}
	if reflect.DeepEqual(*held, *full) {
		return nil
	}
	for i := range full.Routes {
		if !reflect.DeepEqual(held.Routes[i], full.Routes[i]) {
			return fmt.Errorf("epoch %d: %s is %+v followed, %+v read whole", held.Epoch, full.Routes[i].Partition, held.Routes[i], full.Routes[i])
		}
	}
	return fmt.Errorf("epoch %d: followed %+v, read whole %+v", held.Epoch, held.Nodes, full.Nodes)
}

// A client following the map by GET /cluster/map holds, after joins and leaves (the node it
// polls among them), exactly the map a fresh GET /cluster gives; it read the whole map once,
// and then only what changed.
func TestFollowIncrementally(t *testing.T) {
	tc := newTestCluster(t)
	ck1 := tc.start("node-1")
	ck2 := tc.start("node-2")
	tc.start("node-3")
	tc.settled(10 * time.Second)
	rec := newRecorder(t)
	c := newClient(t, Config{Seeds: []string{ck1.AdvertiseAddr()}, HTTPClient: rec.client})

	steps := []struct {
		name string
		do   func()
		// at is a node that stays, to read the whole map from.
		at *clusterkit.ClusterKit
	}{
		{"node-4 joins", func() { tc.start("node-4") }, ck2},
		{"node-5 joins", func() { tc.start("node-5") }, ck2},
		{"node-3 leaves", func() { tc.stop("node-3") }, ck2},
		{"node-1, the polled seed, leaves", func() { tc.stop("node-1") }, ck2},
		{"node-6 joins", func() { tc.start("node-6") }, ck2},
	}
	for _, s := range steps {
		s.do()
		tc.settled(10 * time.Second)
		// Well within the 20s wait of one poll: the client was told, not polling.
		waitFor(t, 5*time.Second, s.name+": the followed map is the whole map", func() error { return sameAsFullRead(c, s.at.AdvertiseAddr()) })
	}

	seen := rec.requests()
	if len(seen) == 0 || seen[0] != "/cluster 200" {
		t.Fatalf("requests %v: want GET /cluster first", seen)
	}
	deltas := 0
	for _, s := range seen[1:] {
		if !strings.HasPrefix(s, "/cluster/map ") {
			t.Fatalf("requests %v: after the first, only GET /cluster/map", seen)
		}
		if s == "/cluster/map 200 delta" {
			deltas++
		}
	}
	if deltas < len(steps) {
		t.Fatalf("requests %v: %d answers with only what changed for %d changes", seen, deltas, len(steps))
	}
	t.Logf("requests: %v", seen)
	if n := testing.AllocsPerRun(100, func() {
		r, _ := c.Route("user:42")
		sink ^= uint32(len(r.Primary().ID))
	}); n != 0 {
		t.Fatalf("Route on a map built from changes allocates %v times per call", n)
	}
}

// A node without GET /cluster/map (an older version: 404) is long-polled with GET /cluster
// instead, and the client follows it as well, without asking it GET /cluster/map again.
func TestFollowFallsBackToClusterOn404(t *testing.T) {
	tc := newTestCluster(t)
	ck1 := tc.start("node-1")
	tc.start("node-2")
	tc.settled(10 * time.Second)
	h := ck1.Handler()
	older := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cluster/map" {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(older.Close) // after the client's Close, which newClient registers next
	rec := newRecorder(t)
	c := newClient(t, Config{Seeds: []string{strings.TrimPrefix(older.URL, "http://")}, HTTPClient: rec.client})

	ck3 := tc.start("node-3")
	tc.settled(10 * time.Second)
	waitFor(t, 5*time.Second, "client follows the join", func() error { return agree(c, ck3, 2000) })
	if err := sameAsFullRead(c, ck1.AdvertiseAddr()); err != nil {
		t.Fatal(err)
	}
	seen := rec.requests()
	maps, polls := 0, 0
	for _, s := range seen {
		switch {
		case s == "/cluster/map 404":
			maps++
		case strings.HasPrefix(s, "/cluster/map"):
			t.Fatalf("requests %v: the older node answered GET /cluster/map", seen)
		case s == "/cluster 200":
			polls++
		}
	}
	if maps != 1 || polls < 2 {
		t.Fatalf("requests %v: want one 404 for GET /cluster/map, then GET /cluster", seen)
	}
}
