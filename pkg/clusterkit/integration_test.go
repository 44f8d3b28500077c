package clusterkit_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
	"github.com/clusterkit-go/clusterkit/pkg/clustertest"
)

// Nodes that join one by one form one cluster: one leader, one map on every node, every
// partition on min(N, R) distinct live nodes. Losing a node of a 3-node cluster with R=3 still
// moves its partitions.
func TestClusterFormsAndShrinks(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16, ReplicationFactor: 3})
	ck := c.Add("node-1")
	if err := c.Converged(); err != nil {
		t.Fatalf("single node right after Start: %v", err)
	}
	p, err := ck.GetPartition("user:123")
	if err != nil || !ck.IsPrimary(p) || ck.GetPrimary(p).ID != "node-1" {
		t.Fatalf("single node should be primary of everything: %v %v", p, err)
	}
	c.Add("node-2")
	c.Add("node-3")
	c.Add("node-4")
	c.WaitConverged(10 * time.Second)
	c.Stop("node-4")
	c.WaitConverged(10 * time.Second)
	c.Stop("node-3")
	c.WaitConverged(10 * time.Second)
}

// A graceful Stop moves partitions at once, not after the lease TTL, whether the stopped node
// leads or not.
func TestGracefulStopMovesPromptly(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16, LeaseTTL: 30 * time.Second})
	for i := 1; i <= 4; i++ {
		c.Add(fmt.Sprintf("node-%d", i))
	}
	c.WaitConverged(10 * time.Second)
	var leader, follower string
	for id, ck := range c.Nodes() {
		if ck.IsLeader() {
			leader = id
		} else {
			follower = id
		}
	}
	for _, id := range []string{follower, leader} {
		start := time.Now()
		c.Stop(id)
		// Well under the 30s TTL: only a revoked lease or a leaving map can be this fast.
		c.WaitConverged(5 * time.Second)
		t.Logf("stop of %s: all maps updated after %v", id, time.Since(start))
	}
}

// A crashed node (its lease expires) loses its partitions after about one TTL.
func TestCrashMovesAfterTTL(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16})
	for i := 1; i <= 3; i++ {
		c.Add(fmt.Sprintf("node-%d", i))
	}
	c.WaitConverged(10 * time.Second)
	victim, _ := pickVictim(c)
	c.Kill(victim)
	start := time.Now()
	c.WaitConverged(clustertest.DefaultLeaseTTL + 5*time.Second)
	t.Logf("crash of %s noticed after %v (TTL %v)", victim, time.Since(start), clustertest.DefaultLeaseTTL)
}

// Killing the leader elects another that keeps publishing maps.
func TestLeaderCrashElectsNewLeader(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16})
	c.Add("node-1")
	c.Add("node-2")
	c.Add("node-3")
	c.WaitConverged(10 * time.Second)
	leader := leaderOf(c).GetMyNodeID()
	epoch := c.Node("node-1").Epoch()
	c.Kill(leader)
	c.WaitConverged(10 * time.Second)
	after := anyNode(c)
	if after.Leader() == leader || after.Epoch() <= epoch {
		t.Fatalf("map after the crash: leader %s epoch %d (old leader %s, epoch %d)", after.Leader(), after.Epoch(), leader, epoch)
	}
	// The new leader keeps working: a join is placed.
	c.Add("node-4")
	c.WaitConverged(10 * time.Second)
}

// A second process with a live node's ID is refused and changes nothing; the node itself,
// restarted with its DataDir, takes its registration back at once.
func TestDuplicateNodeID(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16, LeaseTTL: 30 * time.Second})
	c.Add("node-1")
	c.Add("node-2")
	c.WaitConverged(10 * time.Second)
	epoch := c.Node("node-1").Epoch()

	start := time.Now()
	dup := c.Options("node-2")
	dup.DataDir = t.TempDir()
	_, err := c.TryStart(dup)
	var inUse *clusterkit.NodeIDInUseError
	if !errors.As(err, &inUse) {
		t.Fatalf("duplicate start: got %v, want NodeIDInUseError", err)
	}
	if inUse.NodeID != "node-2" || inUse.Addr != c.Node("node-2").AdvertiseAddr() || inUse.LeaseLeft <= 0 {
		t.Fatalf("error lacks details: %+v", inUse)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("duplicate refused only after %v", time.Since(start))
	}
	t.Logf("refused: %v", err)
	if err := c.Converged(); err != nil || c.Node("node-1").Epoch() != epoch {
		t.Fatalf("the refused start changed the cluster: %v", err)
	}

	// A crash and restart with the same DataDir, long before the 30s lease expires.
	c.Kill("node-2")
	c.Add("node-2")
	c.WaitConverged(10 * time.Second)
}

// A node whose settings differ from the cluster's refuses to start and names the setting.
func TestConfigMismatch(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16})
	c.Add("node-1")
	tests := []struct {
		setting string
		edit    func(*clusterkit.Options)
	}{
		{"PartitionCount", func(o *clusterkit.Options) { o.PartitionCount = 32 }},
		{"ReplicationFactor", func(o *clusterkit.Options) { o.ReplicationFactor = 2 }},
	}
	for _, tt := range tests {
		o := c.Options("node-2")
		tt.edit(&o)
		_, err := c.TryStart(o)
		var mismatch *clusterkit.ConfigMismatchError
		if !errors.As(err, &mismatch) || mismatch.Setting != tt.setting {
			t.Fatalf("got %v, want a ConfigMismatchError on %s", err, tt.setting)
		}
		t.Logf("refused: %v", err)
	}
	c.WaitConverged(5 * time.Second)
}

// hookLog records hook calls.
type hookLog struct {
	mu    sync.Mutex
	calls []string
}

// attach registers the log's hook on ck; pass it to Start or Add.
func (h *hookLog) attach(ck *clusterkit.ClusterKit) { ck.OnPartitionChange(h.hook) }

func (h *hookLog) hook(partitionID string, from []*clusterkit.Node, to *clusterkit.Node) {
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

func (h *hookLog) reset() {
	h.mu.Lock()
	h.calls = nil
	h.mu.Unlock()
}

// Hooks fire on every node for every (partition, new holder), with the live previous holders as
// sources: the same calls on every node, matching the two maps.
func TestHooksSeeCopySources(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16, ReplicationFactor: 2})
	logs := map[string]*hookLog{"node-1": {}, "node-2": {}, "node-3": {}}
	c.Add("node-1", logs["node-1"].attach)
	c.Add("node-2", logs["node-2"].attach)
	c.WaitConverged(10 * time.Second)
	before := clusterkit.RawMap(c.Node("node-1"))
	settleHooks(t, c)
	logs["node-1"].reset()
	logs["node-2"].reset()

	// node-3 registers its hook before Start, so it sees the change Start brings about.
	c.Add("node-3", logs["node-3"].attach)
	c.WaitConverged(10 * time.Second)
	after := clusterkit.RawMap(c.Node("node-1"))
	want := clusterkit.HookCalls(before, after)
	slices.Sort(want)
	if len(want) == 0 {
		t.Fatal("the join moved nothing")
	}
	settleHooks(t, c)
	for id, l := range logs {
		if got := l.snapshot(); !slices.Equal(got, want) {
			t.Errorf("%s saw\n%q\nwant\n%q", id, got, want)
		}
	}
	// Every event of the join copies to node-3 from the partition's old holders.
	for i := range after.Partitions {
		b, a := before.Partitions[i].Holders, after.Partitions[i].Holders
		if !slices.Equal(b, a) && !slices.Contains(a, "node-3") {
			t.Errorf("partition-%d changed without node-3: %v -> %v", i, b, a)
		}
	}
}

// A hook that panics and a hook that blocks do not stop the node: it keeps applying maps and
// answering lookups, and Stop still returns.
func TestBadHooksDoNotStopTheNode(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16, ShutdownTimeout: 2 * time.Second})
	release := make(chan struct{})
	defer close(release)
	ck1 := c.Add("node-1", func(ck *clusterkit.ClusterKit) {
		ck.OnPartitionChange(func(string, []*clusterkit.Node, *clusterkit.Node) { panic("hook bug") })
		ck.OnPartitionChange(func(string, []*clusterkit.Node, *clusterkit.Node) { <-release })
	})
	for i := 2; i <= 4; i++ {
		c.Add(fmt.Sprintf("node-%d", i))
		c.WaitConverged(10 * time.Second)
	}
	p, err := ck1.GetPartition("user:123")
	if err != nil || ck1.GetPrimary(p) == nil {
		t.Fatalf("lookups on the node with bad hooks: %v", err)
	}
	stopped := make(chan struct{})
	go func() { c.Stop("node-1"); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop hung on a blocked hook")
	}
	c.WaitConverged(10 * time.Second)
}

// A node whose lease is lost behind its back (as when etcd expires it during a partition) stops
// leading at once, the others take over and drop it from the map, and the node registers again
// under a new lease and comes back.
func TestLostLeaseReRegisters(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16, LeaseTTL: 30 * time.Second})
	c.Add("node-1")
	c.Add("node-2")
	c.Add("node-3")
	c.WaitConverged(10 * time.Second)
	leader := leaderOf(c)
	lease := clusterkit.Lease(leader)
	if _, err := c.Etcd().Revoke(context.Background(), lease); err != nil {
		t.Fatal(err)
	}
	etcdtest.WaitFor(t, 10*time.Second, "another node leads", func() error {
		for _, ck := range c.Nodes() {
			if ck.IsLeader() && ck != leader {
				return nil
			}
		}
		return errors.New("no new leader")
	})
	// The lost node registers under a new lease, and comes back in the map. (Right after the
	// revoke the old map still lists every node, so convergence alone proves nothing.)
	etcdtest.WaitFor(t, 10*time.Second, "registered under a new lease", func() error {
		if again := clusterkit.Lease(leader); again == clientv3.NoLease || again == lease {
			return errors.New("still on the revoked lease")
		}
		return nil
	})
	c.WaitConverged(10 * time.Second)
}

// The node's metrics go to the registerer it was given.
func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16, Registerer: reg})
	ck := c.Add("node-1")
	// The leader records its map once written, which may be after the node has applied it.
	got := map[string]float64{}
	etcdtest.WaitFor(t, 5*time.Second, "the first map in the metrics", func() error {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		clear(got)
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
			return fmt.Errorf("metrics: %v (epoch %d)", got, ck.Epoch())
		}
		return nil
	})
	// A second node on the same registry is refused with a clear error, not a panic.
	if _, err := clusterkit.NewClusterKit(c.Options("node-2")); !errors.Is(err, clusterkit.ErrInvalidOptions) {
		t.Fatalf("duplicate registration: %v", err)
	}

	// The registry is a Gatherer: the HTTP API serves it at /metrics, in the text format.
	srv := httptest.NewServer(ck.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	served, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s, %v", resp.Status, err)
	}
	for _, name := range []string{"clusterkit_map_epoch", "clusterkit_etcd_nospace_alarm", "clusterkit_self_fenced"} {
		f := served[name]
		if f == nil || len(f.GetMetric()) != 1 {
			t.Fatalf("GET /metrics has no %s", name)
		}
		if name == "clusterkit_map_epoch" && f.GetMetric()[0].GetGauge().GetValue() != got[name] {
			t.Errorf("GET /metrics: %s = %v, the registry has %v", name, f.GetMetric()[0].GetGauge().GetValue(), got[name])
		}
	}
}

// Without a Gatherer there is no /metrics.
func TestMetricsNotServedWithoutGatherer(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16})
	srv := httptest.NewServer(c.Add("node-1").Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /metrics without a Gatherer: %s, want 404", resp.Status)
	}
}
