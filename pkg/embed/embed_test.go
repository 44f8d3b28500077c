package embed_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/pkg/embed"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }

func TestInvalidConfig(t *testing.T) {
	tests := []struct {
		name  string
		cfg   embed.Config
		field string
	}{
		{"no name", embed.Config{Dir: t.TempDir()}, "Name"},
		{"no dir", embed.Config{Name: "a"}, "Dir"},
		{"bad client addr", embed.Config{Name: "a", Dir: t.TempDir(), ClientAddr: "nope"}, "ClientAddr"},
		{"bad peer port", embed.Config{Name: "a", Dir: t.TempDir(), PeerAddr: "127.0.0.1:70000"}, "PeerAddr"},
		{"tiny retention", embed.Config{Name: "a", Dir: t.TempDir(), CompactionRetention: time.Millisecond}, "CompactionRetention"},
		{"negative quota", embed.Config{Name: "a", Dir: t.TempDir(), QuotaBackendBytes: -1}, "QuotaBackendBytes"},
		{"tiny quota", embed.Config{Name: "a", Dir: t.TempDir(), QuotaBackendBytes: 1 << 20}, "QuotaBackendBytes"},
		{"huge quota", embed.Config{Name: "a", Dir: t.TempDir(), QuotaBackendBytes: 16 << 30}, "QuotaBackendBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := embed.Start(context.Background(), tt.cfg)
			if !errors.Is(err, embed.ErrInvalidConfig) {
				t.Fatalf("got %v, want ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), ": "+tt.field) {
				t.Fatalf("error %q does not name %s", err, tt.field)
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

// testConfig has shorter raft timings than etcd's defaults, so that elections after a stop are
// quick; still ten heartbeats per election timeout, as etcd recommends.
func testConfig(t *testing.T, name string) embed.Config {
	return embed.Config{Name: name, Dir: t.TempDir(), UnsafeNoFsync: true,
		HeartbeatInterval: 50 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond}
}

func hex(m *embed.Member) string { return strconv.FormatUint(m.ID(), 16) }

func newClient(t *testing.T, endpoints ...string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A running single member grows into a three-member cluster through Join (learner, then
// promoted), serving the data written before; the cluster keeps its quorum when one member
// stops; Remove then refuses, changing nothing, to remove a second member, since the cluster
// would be left without a running quorum; the stopped member, restarted in its Dir, rejoins as the
// same member and catches up; Remove then takes a member out for good and deletes its data. The
// last member cannot be removed.
func TestJoinRestartRemove(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfgs := map[string]embed.Config{"a": testConfig(t, "a"), "b": testConfig(t, "b"), "c": testConfig(t, "c")}
	a, err := embed.Start(ctx, cfgs["a"])
	if err != nil {
		t.Fatal(err)
	}
	defer func() { a.Close() }()
	ca := newClient(t, a.Endpoints()...)
	if err := a.Remove(ctx, ca); !errors.Is(err, embed.ErrLastMember) {
		t.Fatalf("removing the only member: %v, want ErrLastMember", err)
	}
	if _, err := ca.Put(ctx, "k", "before"); err != nil {
		t.Fatal(err)
	}
	members := map[string]*embed.Member{"a": a}
	for _, name := range []string{"b", "c"} {
		m, err := embed.Join(ctx, ca, cfgs[name])
		if err != nil {
			t.Fatalf("join %s: %v", name, err)
		}
		defer m.Close()
		if !embed.HasData(cfgs[name].Dir) {
			t.Errorf("%s: no data in %s", name, cfgs[name].Dir)
		}
		members[name] = m
	}
	ids := etcdtest.Members(t, ca)
	if len(ids) != 3 {
		t.Fatalf("members %v, want a, b and c", ids)
	}
	for name, m := range members {
		if ids[name] != hex(m) {
			t.Errorf("%s: member list says %s, member says %s", name, ids[name], hex(m))
		}
		// Each member serves the data written before it joined.
		resp, err := newClient(t, m.Endpoints()...).Get(ctx, "k", clientv3.WithSerializable())
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "before" {
			t.Errorf("%s: get k: %v %v", name, resp, err)
		}
	}

	// Stop the first member: the other two still make a quorum.
	idA, peerA := a.ID(), a.PeerURL()
	a.Close()
	b, c := members["b"], members["c"]
	cbc := newClient(t, b.Endpoints()[0], c.Endpoints()[0])
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = cbc.Put(wctx, "k", "while-a-was-down")
	wcancel()
	if err != nil {
		t.Fatalf("write with a down: %v", err)
	}

	// With a down, removing b would leave c alone out of two members: no quorum.
	rctx, rcancel := context.WithTimeout(ctx, 15*time.Second)
	err = b.Remove(rctx, cbc)
	rcancel()
	if !errors.Is(err, embed.ErrQuorumAtRisk) {
		t.Fatalf("removing b while a is down: %v, want ErrQuorumAtRisk", err)
	}
	t.Logf("removal refused as expected: %v", err)
	if after := etcdtest.Members(t, cbc); !embed.HasData(cfgs["b"].Dir) || !maps.Equal(after, ids) {
		t.Fatal("a refused removal changed something")
	}

	// Restarted in its Dir on its peer address, a is the same member and catches up.
	cfg := cfgs["a"]
	cfg.PeerAddr = strings.TrimPrefix(peerA, "http://")
	if a, err = embed.Start(ctx, cfg); err != nil {
		t.Fatalf("restart a: %v", err)
	}
	if a.ID() != idA {
		t.Errorf("restarted a is member %x, was %x", a.ID(), idA)
	}
	if after := etcdtest.Members(t, cbc); !maps.Equal(after, ids) {
		t.Errorf("members after the restart %v, before %v", after, ids)
	}
	// A linearizable read through a is served from a's own data once a has applied all that
	// the cluster committed.
	resp, err := newClient(t, a.Endpoints()...).Get(ctx, "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "while-a-was-down" {
		t.Errorf("restarted a serves %v (%v)", resp, err)
	}

	// All three run: b can go.
	all := newClient(t, a.Endpoints()[0], b.Endpoints()[0], c.Endpoints()[0])
	if err := b.Remove(ctx, all); err != nil {
		t.Fatalf("remove b: %v", err)
	}
	if embed.HasData(cfgs["b"].Dir) {
		t.Error("b's data is still there after Remove")
	}
	delete(ids, "b")
	if after := etcdtest.Members(t, all); !maps.Equal(after, ids) {
		t.Errorf("after removing b: %v, want %v", after, ids)
	}
	if _, err := all.Put(ctx, "k", "v"); err != nil {
		t.Errorf("write after removing b: %v", err)
	}
}
