package embed_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/pkg/embed"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"))
}

func TestInvalidConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  embed.Config
	}{
		{"no name", embed.Config{Dir: t.TempDir()}},
		{"no dir", embed.Config{Name: "a"}},
		{"bad client addr", embed.Config{Name: "a", Dir: t.TempDir(), ClientAddr: "nope"}},
		{"bad peer port", embed.Config{Name: "a", Dir: t.TempDir(), PeerAddr: "127.0.0.1:70000"}},
		{"tiny retention", embed.Config{Name: "a", Dir: t.TempDir(), CompactionRetention: time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := embed.Start(context.Background(), tt.cfg); !errors.Is(err, embed.ErrInvalidConfig) {
				t.Fatalf("got %v, want ErrInvalidConfig", err)
			}
		})
	}
}

// A member serves clients on its advertised endpoint, and a member restarted in the same
// directory keeps its data.
func TestStartRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	put := func(m *embed.Member, key, value string) {
		c, err := clientv3.New(clientv3.Config{Endpoints: m.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if value != "" {
			if _, err := c.Put(ctx, key, value); err != nil {
				t.Fatal(err)
			}
			return
		}
		resp, err := c.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "kept" {
			t.Fatalf("after restart: %v", resp.Kvs)
		}
	}
	m, err := embed.Start(ctx, embed.Config{Name: "a", Dir: dir, UnsafeNoFsync: false})
	if err != nil {
		t.Fatal(err)
	}
	put(m, "k", "kept")
	peer := m.PeerURL()
	m.Close()
	m.Close() // safe twice

	// The peer URL is part of the member's identity: restart on the same one.
	m, err = embed.Start(ctx, embed.Config{Name: "a", Dir: dir, PeerAddr: peer[len("http://"):]})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	put(m, "k", "")
}

// Two members on one machine with port 0 get distinct free ports.
func TestFreePortsDoNotCollide(t *testing.T) {
	ctx := context.Background()
	a, err := embed.Start(ctx, embed.Config{Name: "a", Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := embed.Start(ctx, embed.Config{Name: "b", Dir: t.TempDir(), UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.Endpoints()[0] == b.Endpoints()[0] || a.PeerURL() == b.PeerURL() {
		t.Fatalf("collision: %v %v", a.Endpoints(), b.Endpoints())
	}
}
