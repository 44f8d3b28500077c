package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// servedMap is a GET /cluster body of a 2-node cluster with the given hash settings, written
// field by field rather than with pkg/wire, which the client reads it with.
func servedMap(epoch uint64, hash state.HashConfig, partitions int) []byte {
	doc := map[string]any{}
	pm := map[string]any{}
	for i := 0; i < partitions; i++ {
		pm[partition.ID(i)] = map[string]any{"id": partition.ID(i), "primary_node": "a", "replica_nodes": []string{"b"}, "primary_epoch": epoch}
	}
	doc["cluster"] = map[string]any{
		"id": "c1", "name": "default", "epoch": epoch,
		"nodes":         map[string]any{"a": map[string]string{"id": "a", "ip": "127.0.0.1:1"}, "b": map[string]string{"id": "b", "ip": "127.0.0.1:2"}},
		"partition_map": pm,
	}
	doc["hash_config"] = map[string]any{"algorithm": hash.Algorithm, "modulo": hash.Modulo, "format": hash.Format}
	b, _ := json.Marshal(doc)
	return b
}

func serve(t *testing.T, body []byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"c1-1"`)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// New names what is wrong: the configuration, a hash the client cannot follow, seeds that
// never answer.
func TestNewErrors(t *testing.T) {
	md5 := state.HashConfig{Algorithm: "md5", Modulo: 8, Format: "partition-%d"}
	good := serve(t, servedMap(1, md5, 8))
	tests := []struct {
		name string
		cfg  Config
		is   error
		says string
	}{
		{"no source", Config{}, ErrInvalidConfig, "set Seeds"},
		{"both sources", Config{Seeds: []string{good}, Etcd: &clientv3.Client{}}, ErrInvalidConfig, "set one"},
		{"a seed serving the map", Config{Seeds: []string{good}}, nil, ""},
		{"bad seed", Config{Seeds: []string{"localhost"}}, ErrInvalidConfig, `"localhost" is not host:port`},
		{"bad cluster name", Config{Seeds: []string{good}, ClusterName: "a b"}, ErrInvalidConfig, "ClusterName"},
		{"other cluster name", Config{Seeds: []string{good}, ClusterName: "prod"}, ErrInvalidConfig, `belongs to cluster "default"`},
		{"unknown algorithm", Config{Seeds: []string{serve(t, servedMap(1, state.HashConfig{Algorithm: "xxhash", Modulo: 8, Format: "partition-%d"}, 8))}},
			ErrUnsupportedHash, `hashes keys with "xxhash"`},
		{"other format", Config{Seeds: []string{serve(t, servedMap(1, state.HashConfig{Algorithm: "md5", Modulo: 8, Format: "p%d"}, 8))}},
			ErrUnsupportedHash, `names partitions "p%d"`},
		{"modulo and map disagree", Config{Seeds: []string{serve(t, servedMap(1, state.HashConfig{Algorithm: "md5", Modulo: 16, Format: "partition-%d"}, 8))}},
			ErrUnsupportedHash, "modulo 16 for a map of 8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := New(ctx, tt.cfg)
			if tt.is == nil {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				c.Close()
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("New: %v; want %v saying %q", err, tt.is, tt.says)
			}
		})
	}

	// Seeds that never answer: New gives up with ctx and names each seed's error.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().String()
	l.Close()
	_, err := New(ctx, Config{Seeds: []string{closed, serve(t, []byte(`{"hello":1}`))}})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), closed+": ") || !strings.Contains(err.Error(), "not a ClusterKit map") {
		t.Fatalf("New with dead seeds: %v", err)
	}
}

// A client applies only newer maps, and refuses a node of another cluster.
func TestNeverGoesBack(t *testing.T) {
	md5 := state.HashConfig{Algorithm: "md5", Modulo: 8, Format: "partition-%d"}
	c := &Client{log: zap.NewNop()}
	build := func(epoch uint64) *topology {
		var d wire.Cluster
		if err := json.Unmarshal(servedMap(epoch, md5, 8), &d); err != nil {
			t.Fatal(err)
		}
		top, err := fromCluster(&d, fmt.Sprintf(`"c1-%d"`, epoch))
		if err != nil {
			t.Fatal(err)
		}
		return top
	}
	for _, tt := range []struct {
		epoch   uint64
		applied bool
		want    uint64
	}{{5, true, 5}, {4, false, 5}, {5, false, 5}, {7, true, 7}, {1, false, 7}} {
		if got := c.apply(build(tt.epoch)); got != tt.applied || c.Epoch() != tt.want {
			t.Fatalf("apply epoch %d: applied %v, client at %d; want %v, %d", tt.epoch, got, c.Epoch(), tt.applied, tt.want)
		}
	}
	other := servedMap(9, md5, 8)
	other = []byte(strings.Replace(string(other), `"id":"c1"`, `"id":"c2"`, 1))
	c.httpc = http.DefaultClient
	if _, err := c.fetch(context.Background(), serve(t, other), "", 0); err == nil || !strings.Contains(err.Error(), "another cluster") {
		t.Fatalf("fetch from another cluster: %v", err)
	}
}

// IsUnavailable accepts the connection failures real requests produce, and nothing after which
// the node may have carried the operation out.
func TestIsUnavailable(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().String()
	l.Close()
	hangUp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer hangUp.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	get := func(url string, timeout time.Duration) error {
		httpc := &http.Client{Timeout: timeout, Transport: &http.Transport{}}
		defer httpc.CloseIdleConnections()
		resp, err := httpc.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return err
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	var d net.Dialer
	_, dialCancelled := d.DialContext(cancelled, "tcp", closed)
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"refused", get("http://"+closed+"/", time.Second), true},
		{"closed without an answer", get(hangUp.URL, time.Second), true},
		{"wraps ErrUnavailable", fmt.Errorf("503: %w", ErrUnavailable), true},
		{"timeout after connecting", get(slow.URL, 100*time.Millisecond), false},
		{"dial cancelled by the caller", dialCancelled, false},
		{"context", context.DeadlineExceeded, false},
		{"plain", errors.New("conflict"), false},
		{"nil", nil, false},
	}
	for _, tt := range tests {
		if got := IsUnavailable(tt.err); got != tt.want {
			t.Errorf("%s: IsUnavailable(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

// A client binary carries no etcd server: the package does not depend on pkg/clusterkit.
func TestNoServerDependency(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "go.etcd.io/etcd/server/") || strings.HasSuffix(dep, "/pkg/clusterkit") || strings.HasSuffix(dep, "/pkg/embed") {
			t.Errorf("pkg/client depends on %s", dep)
		}
	}
}

// A node that ignores the long poll (it answers the same map at once, every time) is not
// hammered: the client pauses after an answer that brings nothing new.
func TestPollOfANodeIgnoringTheWaitPauses(t *testing.T) {
	var requests atomic.Int64
	body := servedMap(1, state.HashConfig{Algorithm: "md5", Modulo: 8, Format: "partition-%d"}, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("ETag", `"c1-1"`)
		w.Write(body)
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
	// The first read, one poll answered at once, then the pause (1s).
	if n := requests.Load(); n > 3 {
		t.Fatalf("%d requests in 500ms to a node that ignores the wait", n)
	}
}
