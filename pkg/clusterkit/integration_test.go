package clusterkit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Nodes that join one by one form one cluster: one leader, one map on every node, every
// partition on min(N, R) distinct live nodes. Losing a node of a 3-node cluster with R=3 still
// moves its partitions.
func TestClusterFormsAndShrinks(t *testing.T) {
	tc := newTestCluster(t, Options{ReplicationFactor: 3})
	tc.start("node-1")
	if err := tc.converged(); err != nil {
		t.Fatalf("single node right after Start: %v", err)
	}
	ck := tc.nodes["node-1"]
	p, err := ck.GetPartition("user:123")
	if err != nil || !ck.IsPrimary(p) || ck.GetPrimary(p).ID != "node-1" {
		t.Fatalf("single node should be primary of everything: %v %v", p, err)
	}
	tc.start("node-2")
	tc.start("node-3")
	tc.start("node-4")
	tc.waitConverged(10 * time.Second)
	tc.stop("node-4")
	tc.waitConverged(10 * time.Second)
	tc.stop("node-3")
	tc.waitConverged(10 * time.Second)
}

// A graceful Stop moves partitions at once, not after the lease TTL, whether the stopped node
// leads or not.
func TestGracefulStopMovesPromptly(t *testing.T) {
	tc := newTestCluster(t, Options{LeaseTTL: 30 * time.Second})
	for i := 1; i <= 4; i++ {
		tc.start(fmt.Sprintf("node-%d", i))
	}
	tc.waitConverged(10 * time.Second)
	var leader, follower string
	for _, ck := range tc.live() {
		if ck.IsLeader() {
			leader = ck.GetMyNodeID()
		} else {
			follower = ck.GetMyNodeID()
		}
	}
	for _, id := range []string{follower, leader} {
		start := time.Now()
		tc.stop(id)
		// Well under the 30s TTL: only a revoked lease or a leaving map can be this fast.
		tc.waitConverged(5 * time.Second)
		t.Logf("stop of %s: all maps updated after %v", id, time.Since(start))
	}
}

// A crashed node (its lease expires) loses its partitions after about one TTL.
func TestCrashMovesAfterTTL(t *testing.T) {
	tc := newTestCluster(t, Options{})
	for i := 1; i <= 3; i++ {
		tc.start(fmt.Sprintf("node-%d", i))
	}
	tc.waitConverged(10 * time.Second)
	victim, _ := tc.pickVictim()
	tc.crash(victim)
	start := time.Now()
	tc.waitConverged(2*time.Second + 5*time.Second)
	t.Logf("crash of %s noticed after %v (TTL 2s)", victim, time.Since(start))
}

// Killing the leader elects another that keeps publishing maps.
func TestLeaderCrashElectsNewLeader(t *testing.T) {
	tc := newTestCluster(t, Options{})
	tc.start("node-1")
	tc.start("node-2")
	tc.start("node-3")
	tc.waitConverged(10 * time.Second)
	leader := tc.leader().GetMyNodeID()
	epoch := tc.live()[0].Epoch()
	tc.crash(leader)
	tc.waitConverged(10 * time.Second)
	after := tc.live()[0]
	if after.Leader() == leader || after.Epoch() <= epoch {
		t.Fatalf("map after the crash: leader %s epoch %d (old leader %s, epoch %d)", after.Leader(), after.Epoch(), leader, epoch)
	}
	// The new leader keeps working: a join is placed.
	tc.start("node-4")
	tc.waitConverged(10 * time.Second)
}

// A second process with a live node's ID is refused and changes nothing; the node itself,
// restarted with its DataDir, takes its registration back at once.
func TestDuplicateNodeID(t *testing.T) {
	tc := newTestCluster(t, Options{LeaseTTL: 30 * time.Second})
	tc.start("node-1")
	tc.start("node-2")
	tc.waitConverged(10 * time.Second)
	epoch := tc.nodes["node-1"].Epoch()

	start := time.Now()
	_, err := tc.tryStart("node-2", func(o *Options) { o.DataDir = t.TempDir() })
	var inUse *NodeIDInUseError
	if !errors.As(err, &inUse) {
		t.Fatalf("duplicate start: got %v, want NodeIDInUseError", err)
	}
	if inUse.NodeID != "node-2" || inUse.Addr != tc.nodes["node-2"].AdvertiseAddr() || inUse.LeaseLeft <= 0 {
		t.Fatalf("error lacks details: %+v", inUse)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("duplicate refused only after %v", time.Since(start))
	}
	t.Logf("refused: %v", err)
	if err := tc.converged(); err != nil || tc.nodes["node-1"].Epoch() != epoch {
		t.Fatalf("the refused start changed the cluster: %v", err)
	}

	// A crash and restart with the same DataDir, long before the 30s lease expires.
	tc.crash("node-2")
	tc.start("node-2")
	tc.waitConverged(10 * time.Second)
}

// A node whose settings differ from the cluster's refuses to start and names the setting.
func TestConfigMismatch(t *testing.T) {
	tc := newTestCluster(t, Options{})
	tc.start("node-1")
	tests := []struct {
		setting string
		edit    func(*Options)
	}{
		{"PartitionCount", func(o *Options) { o.PartitionCount = 32 }},
		{"ReplicationFactor", func(o *Options) { o.ReplicationFactor = 2 }},
	}
	for _, tt := range tests {
		_, err := tc.tryStart("node-2", tt.edit)
		var mismatch *ConfigMismatchError
		if !errors.As(err, &mismatch) || mismatch.Setting != tt.setting {
			t.Fatalf("got %v, want a ConfigMismatchError on %s", err, tt.setting)
		}
		t.Logf("refused: %v", err)
	}
	tc.waitConverged(5 * time.Second)
}

// hookLog records hook calls.
type hookLog struct {
	mu    sync.Mutex
	calls []string
}

func (h *hookLog) hook(partitionID string, from []*Node, to *Node) {
	ids := []string{}
	for _, n := range from {
		ids = append(ids, n.ID)
	}
	h.mu.Lock()
	h.calls = append(h.calls, fmt.Sprintf("%s->%s from %v", partitionID, to.ID, ids))
	h.mu.Unlock()
}

func (h *hookLog) snapshot() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := slices.Clone(h.calls)
	slices.Sort(out)
	return out
}

// Hooks fire on every node for every (partition, new holder), with the live previous holders as
// sources: the same calls on every node, matching the two maps.
func TestHooksSeeCopySources(t *testing.T) {
	tc := newTestCluster(t, Options{ReplicationFactor: 2})
	logs := map[string]*hookLog{}
	withHook := func(id string) func(*Options) {
		logs[id] = &hookLog{}
		return func(o *Options) {}
	}
	tc.start("node-1", withHook("node-1"))
	tc.nodes["node-1"].OnPartitionChange(logs["node-1"].hook)
	tc.start("node-2", withHook("node-2"))
	tc.nodes["node-2"].OnPartitionChange(logs["node-2"].hook)
	tc.waitConverged(10 * time.Second)
	before := tc.nodes["node-1"].maps.snapshot()
	tc.settleHooks()
	for _, l := range logs {
		l.mu.Lock()
		l.calls = nil
		l.mu.Unlock()
	}

	// node-3 registers its hook before Start, so it sees the change Start brings about.
	ck3, err := NewClusterKit(tc.options("node-3"))
	if err != nil {
		t.Fatal(err)
	}
	logs["node-3"] = &hookLog{}
	ck3.OnPartitionChange(logs["node-3"].hook)
	if err := ck3.Start(); err != nil {
		t.Fatal(err)
	}
	tc.mu.Lock()
	tc.nodes["node-3"] = ck3
	tc.mu.Unlock()
	tc.waitConverged(10 * time.Second)
	after := tc.nodes["node-1"].maps.snapshot()
	want := eventStrings(diffHolders(before, after))
	slices.Sort(want)
	if len(want) == 0 {
		t.Fatal("the join moved nothing")
	}
	tc.settleHooks()
	for id, l := range logs {
		if got := l.snapshot(); !slices.Equal(got, want) {
			t.Errorf("%s saw\n%q\nwant\n%q", id, got, want)
		}
	}
	// Every event of the join copies to node-3 from the partition's old holders.
	for i := range after.raw.Partitions {
		b, a := before.raw.Partitions[i].Holders, after.raw.Partitions[i].Holders
		if !slices.Equal(b, a) && !slices.Contains(a, "node-3") {
			t.Errorf("partition-%d changed without node-3: %v -> %v", i, b, a)
		}
	}
}

// A hook that panics and a hook that blocks do not stop the node: it keeps applying maps and
// answering lookups, and Stop still returns.
func TestBadHooksDoNotStopTheNode(t *testing.T) {
	tc := newTestCluster(t, Options{ShutdownTimeout: 2 * time.Second})
	release := make(chan struct{})
	defer close(release)
	ck1, err := NewClusterKit(tc.options("node-1"))
	if err != nil {
		t.Fatal(err)
	}
	ck1.OnPartitionChange(func(string, []*Node, *Node) { panic("hook bug") })
	ck1.OnPartitionChange(func(string, []*Node, *Node) { <-release })
	if err := ck1.Start(); err != nil {
		t.Fatal(err)
	}
	tc.mu.Lock()
	tc.nodes["node-1"] = ck1
	tc.mu.Unlock()
	for i := 2; i <= 4; i++ {
		tc.start(fmt.Sprintf("node-%d", i))
		tc.waitConverged(10 * time.Second)
	}
	p, err := ck1.GetPartition("user:123")
	if err != nil || ck1.GetPrimary(p) == nil {
		t.Fatalf("lookups on the node with bad hooks: %v", err)
	}
	stopped := make(chan struct{})
	go func() { tc.stop("node-1"); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop hung on a blocked hook")
	}
	tc.waitConverged(10 * time.Second)
}

// A node whose lease is lost behind its back (as when etcd expires it during a partition) stops
// leading at once, the others take over and drop it from the map, and the node registers again
// under a new lease and comes back.
func TestLostLeaseReRegisters(t *testing.T) {
	tc := newTestCluster(t, Options{LeaseTTL: 30 * time.Second})
	tc.start("node-1")
	tc.start("node-2")
	tc.start("node-3")
	tc.waitConverged(10 * time.Second)
	leader := tc.leader()
	lease := leader.election.lease()
	if _, err := tc.etcd.Client.Revoke(context.Background(), lease); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "another node leads", func() error {
		for _, ck := range tc.live() {
			if ck.IsLeader() && ck != leader {
				return nil
			}
		}
		return errors.New("no new leader")
	})
	// The lost node registers under a new lease, and comes back in the map. (Right after the
	// revoke the old map still lists every node, so convergence alone proves nothing.)
	waitFor(t, 10*time.Second, "registered under a new lease", func() error {
		again := leader.election.current()
		if again == nil || again.lease == lease {
			return errors.New("still on the revoked lease")
		}
		return nil
	})
	tc.waitConverged(10 * time.Second)
}

// The node's metrics go to the registerer it was given.
func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	tc := newTestCluster(t, Options{Registerer: reg})
	ck := tc.start("node-1")
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			switch {
			case m.GetGauge() != nil:
				got[f.GetName()] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				got[f.GetName()] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	if got["clusterkit_map_epoch"] != float64(ck.Epoch()) || got["clusterkit_rebalance_duration_seconds"] < 1 {
		t.Fatalf("metrics: %v (epoch %d)", got, ck.Epoch())
	}
	// A second node on the same registry is refused with a clear error, not a panic.
	if _, err := NewClusterKit(tc.options("node-2", func(o *Options) { o.Registerer = reg })); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("duplicate registration: %v", err)
	}
}
