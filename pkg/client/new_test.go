package client

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clusterkit-go/clusterkit/internal/wiretest"
)

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
	md5 := wiretest.HashConfig{Algorithm: "md5", Modulo: 8, Format: "partition-%d"}
	good := serve(t, wiretest.ClusterBody(1, md5, 8))
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
		{"unknown algorithm", Config{Seeds: []string{serve(t, wiretest.ClusterBody(1, wiretest.HashConfig{Algorithm: "xxhash", Modulo: 8, Format: "partition-%d"}, 8))}},
			ErrUnsupportedHash, `hashes keys with "xxhash"`},
		{"other format", Config{Seeds: []string{serve(t, wiretest.ClusterBody(1, wiretest.HashConfig{Algorithm: "md5", Modulo: 8, Format: "p%d"}, 8))}},
			ErrUnsupportedHash, `names partitions "p%d"`},
		{"modulo and map disagree", Config{Seeds: []string{serve(t, wiretest.ClusterBody(1, wiretest.HashConfig{Algorithm: "md5", Modulo: 16, Format: "partition-%d"}, 8))}},
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

	// Seeds that never answer: New gives up with ctx and names each seed's error, the one it
	// answered rather than the read that ctx's end cut short.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := l.Addr().String()
	l.Close()
	_, err := New(ctx, Config{Seeds: []string{closed, serve(t, []byte(`{"hello":1}`))}})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), closed+": ") || !strings.Contains(err.Error(), "not a ClusterKit map") {
		t.Fatalf("New with dead seeds: %v", err)
	}
}

// A GET /cluster body with what nodes add for operators (each node's weight and state, the
// maintenances, the queued copies) routes as the same body without them: the client reads both.
func TestNewReadsBodiesWithOperatorsFields(t *testing.T) {
	md5 := wiretest.HashConfig{Algorithm: "md5", Modulo: 8, Format: "partition-%d"}
	old := wiretest.ClusterBody(1, md5, 8)
	var doc map[string]any
	if err := json.Unmarshal(old, &doc); err != nil {
		t.Fatal(err)
	}
	cl := doc["cluster"].(map[string]any)
	cl["nodes"] = map[string]any{
		"a": map[string]any{"id": "a", "ip": "127.0.0.1:1", "weight": 3},
		"b": map[string]any{"id": "b", "ip": "127.0.0.1:2", "weight": 1, "state": "cordoned"},
	}
	cl["queued"] = map[string]int{"b": 2}
	cl["maintenance"] = []map[string]string{{"reason": "upgrade", "by": "ops", "at": "2026-01-02T03:04:05Z"}}
	added, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var routes [][]Route
	for _, body := range [][]byte{old, added} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/cluster" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("ETag", `"c1-1"`)
			w.Write(body)
		}))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := New(ctx, Config{Seeds: []string{strings.TrimPrefix(srv.URL, "http://")}})
		cancel()
		if err != nil {
			srv.Close()
			t.Fatalf("body %s: %v", body, err)
		}
		var rs []Route
		for _, key := range []string{"user:123", "order:100", "product:abc", "test-key"} {
			r, err := c.Route(key)
			if err != nil {
				t.Fatalf("route %s: %v", key, err)
			}
			rs = append(rs, r)
		}
		routes = append(routes, rs)
		c.Close()
		srv.Close()
	}
	if !reflect.DeepEqual(routes[0], routes[1]) || routes[1][0].Primary().Addr != "127.0.0.1:1" {
		t.Errorf("routes of the body without the operators' fields %+v, with them %+v", routes[0], routes[1])
	}
}
