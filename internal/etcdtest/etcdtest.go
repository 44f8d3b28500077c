// Package etcdtest starts a real etcd server for tests: an embedded single member on
// 127.0.0.1 with free ports and its data in the test's temporary directory.
package etcdtest

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/pkg/embed"
)

// Server is a running test etcd.
type Server struct {
	Member *embed.Member
	// Client is connected to the server and closed at the end of the test.
	Client *clientv3.Client
}

// Start starts an etcd member that is stopped when tb ends. fsync is off: a test etcd never
// needs to survive a machine crash.
func Start(tb testing.TB) *Server {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := embed.Start(ctx, embed.Config{
		Name:          "test",
		Dir:           tb.TempDir(),
		ClientAddr:    "127.0.0.1:0",
		PeerAddr:      "127.0.0.1:0",
		UnsafeNoFsync: true,
	})
	if err != nil {
		tb.Fatalf("start etcd: %v", err)
	}
	tb.Cleanup(m.Close)
	c := NewClient(tb, m.Endpoints())
	return &Server{Member: m, Client: c}
}

// NewClient returns a client of endpoints that is closed at the end of the test.
func NewClient(tb testing.TB, endpoints []string) *clientv3.Client {
	tb.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		tb.Fatalf("etcd client: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}
