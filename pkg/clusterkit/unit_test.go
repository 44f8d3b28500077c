package clusterkit

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// The key -> partition hash is a wire contract (vectors from DESIGN.md); internal/partition
// tests the hash itself, this tests that GetPartition follows it.
func TestPartitionHashGoldenVectors(t *testing.T) {
	ck, _ := lookupFixture(t)
	for key, want := range map[string]string{"user:123": "partition-48", "order:100": "partition-46", "product:abc": "partition-18", "test-key": "partition-49"} {
		p, err := ck.GetPartition(key)
		if err != nil || p.ID != want || p.Index() != partition.Index(key, 64) {
			t.Errorf("GetPartition(%q) = %v, %v; want %s", key, p, err, want)
		}
	}
}

func TestOptionsDefaults(t *testing.T) {
	ck, err := NewClusterKit(Options{NodeID: "node-1", HTTPAddr: ":8080"})
	if err != nil {
		t.Fatal(err)
	}
	o := ck.opts
	checks := []struct {
		name      string
		got, want any
	}{
		{"PartitionCount", o.PartitionCount, 64},
		{"ReplicationFactor", o.ReplicationFactor, 3},
		{"ClusterName", o.ClusterName, "default"},
		{"LeaseTTL", o.LeaseTTL, 10 * time.Second},
		{"StartTimeout", o.StartTimeout, 30 * time.Second},
		{"ShutdownTimeout", o.ShutdownTimeout, 10 * time.Second},
		{"MaxConcurrentHooks", o.MaxConcurrentHooks, 50},
		{"Weight", o.Weight, 1},
		{"mode", o.mode(), etcdEmbedded},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if !strings.HasSuffix(o.DataDir, "/clusterkit/node-1") {
		t.Errorf("DataDir = %q", o.DataDir)
	}
	if ck.GetMyNodeID() != "node-1" {
		t.Errorf("GetMyNodeID = %q", ck.GetMyNodeID())
	}
	// With JoinAddr the cluster name comes from the joined node unless set.
	ck, err = NewClusterKit(Options{NodeID: "node-2", HTTPAddr: ":8081", JoinAddr: "localhost:8080"})
	if err != nil {
		t.Fatal(err)
	}
	if ck.opts.ClusterName != "" || ck.opts.mode() != etcdJoin {
		t.Errorf("join: ClusterName %q mode %v", ck.opts.ClusterName, ck.opts.mode())
	}
}

func TestOptionsValidation(t *testing.T) {
	ok := Options{NodeID: "n1", HTTPAddr: ":8080"}
	tests := []struct {
		name  string
		edit  func(*Options)
		field string
	}{
		{"no node ID", func(o *Options) { o.NodeID = "" }, "NodeID"},
		{"slash in node ID", func(o *Options) { o.NodeID = "a/b" }, "NodeID"},
		{"space in node ID", func(o *Options) { o.NodeID = "a b" }, "NodeID"},
		{"no HTTPAddr", func(o *Options) { o.HTTPAddr = "" }, "HTTPAddr"},
		{"HTTPAddr without port", func(o *Options) { o.HTTPAddr = "localhost" }, "HTTPAddr"},
		{"HTTPAddr bad port", func(o *Options) { o.HTTPAddr = ":99999" }, "HTTPAddr"},
		{"JoinAddr without host", func(o *Options) { o.JoinAddr = ":8080" }, "JoinAddr"},
		{"AdvertiseAddr port 0", func(o *Options) { o.AdvertiseAddr = "10.0.0.1:0" }, "AdvertiseAddr"},
		{"negative partitions", func(o *Options) { o.PartitionCount = -1 }, "PartitionCount"},
		{"too many partitions", func(o *Options) { o.PartitionCount = MaxPartitionCount + 1 }, "PartitionCount"},
		{"negative replication", func(o *Options) { o.ReplicationFactor = -3 }, "ReplicationFactor"},
		{"huge replication", func(o *Options) { o.ReplicationFactor = 100 }, "ReplicationFactor"},
		{"TTL under 2s", func(o *Options) { o.LeaseTTL = time.Second }, "LeaseTTL"},
		{"TTL not whole seconds", func(o *Options) { o.LeaseTTL = 2500 * time.Millisecond }, "LeaseTTL"},
		{"negative hooks", func(o *Options) { o.MaxConcurrentHooks = -1 }, "MaxConcurrentHooks"},
		{"negative weight", func(o *Options) { o.Weight = -1 }, "Weight"},
		{"bad cluster name", func(o *Options) { o.ClusterName = "a/b" }, "ClusterName"},
		{"join and endpoints", func(o *Options) { o.JoinAddr = "h:1"; o.EtcdEndpoints = []string{"http://h:2379"} }, "EtcdClient/EtcdEndpoints/JoinAddr"},
		{"empty endpoint", func(o *Options) { o.EtcdEndpoints = []string{""} }, "EtcdEndpoints"},
		{"user without password", func(o *Options) { o.EtcdEndpoints = []string{"h:2379"}; o.EtcdUsername = "u" }, "EtcdUsername/EtcdPassword"},
		{"negative start timeout", func(o *Options) { o.StartTimeout = -time.Second }, "StartTimeout"},
		{"bad embedded addr", func(o *Options) { o.EmbeddedEtcdClientAddr = "nope" }, "EmbeddedEtcdClientAddr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.edit(&o)
			_, err := NewClusterKit(o)
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("got %v, want ErrInvalidOptions", err)
			}
			if !strings.Contains(err.Error(), ": "+tt.field+":") {
				t.Fatalf("error %q does not name %s", err, tt.field)
			}
		})
	}
}

func testMap(epoch uint64, nodes []string, parts ...[]string) *state.Map {
	m := &state.Map{Epoch: epoch, Nodes: map[string]state.Node{}}
	for _, h := range parts {
		m.Partitions = append(m.Partitions, state.Entry{Holders: h, PrimaryEpoch: epoch})
	}
	for _, n := range nodes {
		m.Nodes[n] = state.Node{ID: n, IP: "127.0.0.1:1"}
	}
	return m
}

func eventStrings(events []hookEvent) []string {
	var out []string
	for _, ev := range events {
		var from []string
		for _, n := range ev.from {
			from = append(from, n.ID)
		}
		out = append(out, fmt.Sprintf("%s->%s from %v", ev.id, ev.to.ID, from))
	}
	return out
}

// A map change turns into one hook event per (partition, new holder), with the previous holders
// that are still live as sources.
func TestDiffHolders(t *testing.T) {
	m1 := testMap(1, []string{"a", "b", "c"}, []string{"a", "b"}, []string{"b", "c"}, []string{"c", "a"})
	// d joins and takes a slot of partition 0; c dies: partition 1 promotes b's replica... and gets d,
	// partition 2 loses c and gets b.
	m2 := testMap(2, []string{"a", "b", "d"}, []string{"d", "b"}, []string{"b", "d"}, []string{"a", "b"})
	tests := []struct {
		name     string
		old, new *state.Map
		want     []string
	}{
		{"new cluster", nil, m1, []string{
			"partition-0->a from []", "partition-0->b from []",
			"partition-1->b from []", "partition-1->c from []",
			"partition-2->c from []", "partition-2->a from []",
		}},
		{"join and crash", m1, m2, []string{
			"partition-0->d from [a b]",
			"partition-1->d from [b]",
			"partition-2->b from [a]",
		}},
		{"no change", m1, m1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var old *snapshot
			if tt.old != nil {
				old = newSnapshot(tt.old, 1)
			}
			got := eventStrings(diffHolders(old, newSnapshot(tt.new, 2)))
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

// Lookups read the snapshot: holders, roles and partitions passed back by the caller.
func TestSnapshotLookups(t *testing.T) {
	ck, err := NewClusterKit(Options{NodeID: "b", HTTPAddr: ":0", PartitionCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ck.GetPartition("x"); !errors.Is(err, ErrNoPartitionMap) {
		t.Fatalf("before a map: %v", err)
	}
	ck.clock.deadline.Store(int64(time.Hour)) // as if the lease had just been renewed
	ck.maps.snap.Store(newSnapshot(testMap(1, []string{"a", "b", "c"}, []string{"a", "b", "c"}, []string{"b", "c"}), 1))
	p0 := &Partition{ID: "partition-0"}
	if got := ck.GetPrimary(p0); got == nil || got.ID != "a" {
		t.Fatalf("primary of partition-0: %v", got)
	}
	if ck.IsPrimary(p0) || !ck.IsReplica(p0) {
		t.Fatal("b should be a replica of partition-0")
	}
	if got := ck.GetReplicas(p0); len(got) != 2 || got[0].ID != "b" || got[1].ID != "c" {
		t.Fatalf("replicas: %v", got)
	}
	if got := ck.GetNodes(p0); len(got) != 3 || got[0].ID != "a" {
		t.Fatalf("nodes: %v", got)
	}
	p1 := &Partition{ID: "partition-1"}
	if !ck.IsPrimary(p1) || ck.IsReplica(p1) || !ck.IsPrimaryAt(p1, 1) || ck.IsPrimaryAt(p1, 0) {
		t.Fatal("b should be primary of partition-1 at primary epoch 1")
	}
	// Past the lease deadline the node claims nothing, even before the fencing goroutine ran.
	ck.clock.deadline.Store(0)
	if ck.IsPrimary(p1) || ck.IsPrimaryAt(p1, 1) || !ck.IsFenced() {
		t.Fatal("a node past its lease deadline claims a primary role")
	}
	ck.clock.deadline.Store(int64(time.Hour))
	for _, bad := range []*Partition{nil, {ID: "partition-2"}, {ID: "partition-01"}, {ID: "p-1"}} {
		if ck.GetPrimary(bad) != nil || ck.IsPrimary(bad) || ck.GetNodes(bad) != nil {
			t.Fatalf("unknown partition %v answered", bad)
		}
	}
	// A partition handed out by an older map is answered from the current one.
	old, _ := ck.GetPartition("user:123")
	ck.maps.snap.Store(newSnapshot(testMap(2, []string{"c"}, []string{"c"}, []string{"c"}), 2))
	if got := ck.GetPrimary(old); got == nil || got.ID != "c" {
		t.Fatalf("stale partition: primary %v, want c", got)
	}
}

// The dispatcher runs at most max hooks at once, one at a time per partition and in map order,
// never blocks the caller, and survives a panicking hook.
func TestDispatcher(t *testing.T) {
	const max = 3
	var running, peak atomic.Int32
	var mu sync.Mutex
	seen := map[string][]string{} // partition -> copyTo IDs in call order
	release := make(chan struct{})
	hook := func(partitionID string, from []*Node, to *Node) {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		mu.Lock()
		seen[partitionID] = append(seen[partitionID], to.ID)
		mu.Unlock()
		if to.ID == "e1" && partitionID == "partition-0" {
			panic("boom")
		}
	}
	d := newDispatcher(zap.NewNop(), max, func(ev hookEvent) {
		callHook(zap.NewNop(), ev, func() { hook(ev.id, ev.from, ev.to) })
	})
	var events []hookEvent
	for epoch := uint64(1); epoch <= 3; epoch++ {
		for p := 0; p < 10; p++ {
			to := &Node{ID: fmt.Sprintf("e%d", epoch)}
			events = append(events, hookEvent{partition: p, id: PartitionID(p), to: to, epoch: epoch})
		}
	}
	done := make(chan struct{})
	go func() {
		for _, ev := range events {
			d.enqueue([]hookEvent{ev})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("enqueue blocked on running hooks")
	}
	waitFor(t, 5*time.Second, "hooks running at once", func() error {
		if n := running.Load(); n != max {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})
	close(release)
	d.waitIdle()
	if p := peak.Load(); p != max {
		t.Fatalf("peak concurrency %d, want %d", p, max)
	}
	for p := 0; p < 10; p++ {
		if got := seen[PartitionID(p)]; !slices.Equal(got, []string{"e1", "e2", "e3"}) {
			t.Fatalf("partition-%d hooks ran as %v, want e1 e2 e3 in order", p, got)
		}
	}
	if n := d.close(time.Second); n != 0 {
		t.Fatalf("%d hooks still running", n)
	}
}
