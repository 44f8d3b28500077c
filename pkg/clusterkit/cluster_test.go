package clusterkit

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }

// testCluster runs nodes in this process against one real etcd.
type testCluster struct {
	t     *testing.T
	etcd  *etcdtest.Server
	name  string
	mu    sync.Mutex
	nodes map[string]*ClusterKit
	dirs  map[string]string
	base  Options
}

func newTestCluster(t *testing.T, base Options) *testCluster {
	t.Helper()
	tc := &testCluster{
		t:     t,
		etcd:  etcdtest.Start(t),
		name:  strings.ReplaceAll(t.Name(), "/", "_"),
		nodes: map[string]*ClusterKit{},
		dirs:  map[string]string{},
		base:  base,
	}
	t.Cleanup(tc.stopAll)
	return tc
}

func (tc *testCluster) options(id string, edit ...func(*Options)) Options {
	o := tc.base
	o.NodeID = id
	o.HTTPAddr = "127.0.0.1:0"
	o.EtcdClient = tc.etcd.Client
	o.ClusterName = tc.name
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 2 * time.Second
	}
	if o.PartitionCount == 0 {
		o.PartitionCount = 16
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 20 * time.Second
	}
	tc.mu.Lock()
	if tc.dirs[id] == "" {
		tc.dirs[id] = tc.t.TempDir()
	}
	o.DataDir = tc.dirs[id]
	tc.mu.Unlock()
	for _, e := range edit {
		e(&o)
	}
	return o
}

// start starts a node and fails the test if it does not start.
func (tc *testCluster) start(id string, edit ...func(*Options)) *ClusterKit {
	tc.t.Helper()
	ck, err := tc.tryStart(id, edit...)
	if err != nil {
		tc.t.Fatalf("start %s: %v", id, err)
	}
	return ck
}

func (tc *testCluster) tryStart(id string, edit ...func(*Options)) (*ClusterKit, error) {
	ck, err := NewClusterKit(tc.options(id, edit...))
	if err != nil {
		return nil, err
	}
	if err := ck.Start(); err != nil {
		return nil, err
	}
	tc.mu.Lock()
	tc.nodes[id] = ck
	tc.mu.Unlock()
	return ck, nil
}

func (tc *testCluster) stop(id string) {
	tc.mu.Lock()
	ck := tc.nodes[id]
	delete(tc.nodes, id)
	tc.mu.Unlock()
	ck.Stop()
}

// crash stops a node as a killed process would: nothing is said to etcd.
func (tc *testCluster) crash(id string) {
	tc.mu.Lock()
	ck := tc.nodes[id]
	delete(tc.nodes, id)
	tc.mu.Unlock()
	ck.shutdown(stopCrash)
}

func (tc *testCluster) stopAll() {
	tc.mu.Lock()
	nodes := tc.nodes
	tc.nodes = map[string]*ClusterKit{}
	tc.mu.Unlock()
	for _, ck := range nodes {
		ck.Stop()
	}
}

func (tc *testCluster) live() []*ClusterKit {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	var out []*ClusterKit
	for _, ck := range tc.nodes {
		out = append(out, ck)
	}
	return out
}

// waitFor polls cond until it holds, failing the test after within.
var waitFor = etcdtest.WaitFor

// converged reports nil when every live node holds the same map, placed on exactly the live
// nodes, with min(N, R) distinct holders for every partition.
func (tc *testCluster) converged() error {
	nodes := tc.live()
	var want []string
	for _, ck := range nodes {
		want = append(want, ck.GetMyNodeID())
	}
	slices.Sort(want)
	var first *snapshot
	for _, ck := range nodes {
		s := ck.maps.snapshot()
		if s == nil {
			return fmt.Errorf("%s has no map", ck.GetMyNodeID())
		}
		if !slices.Equal(s.nodeIDs, want) {
			return fmt.Errorf("%s at epoch %d lists %v, want %v", ck.GetMyNodeID(), s.epoch, s.nodeIDs, want)
		}
		if first == nil {
			first = s
		} else if s.epoch != first.epoch {
			return fmt.Errorf("epochs differ: %d and %d", s.epoch, first.epoch)
		}
	}
	if first == nil {
		return errors.New("no live node")
	}
	holders := min(len(want), tc.replication())
	for i := range first.raw.Partitions {
		e := &first.raw.Partitions[i]
		h := e.Holders
		if len(e.Pending) > 0 || e.Target != nil {
			return fmt.Errorf("partition-%d is still moving: holders %v, pending %v", i, h, e.Pending)
		}
		if len(h) != holders {
			return fmt.Errorf("partition-%d has holders %v, want %d", i, h, holders)
		}
		for j, id := range h {
			if !slices.Contains(want, id) || slices.Contains(h[:j], id) {
				return fmt.Errorf("partition-%d has holders %v: not distinct live nodes", i, h)
			}
		}
	}
	leaders := 0
	for _, ck := range nodes {
		if ck.IsLeader() {
			leaders++
		}
	}
	if leaders != 1 {
		return fmt.Errorf("%d nodes lead", leaders)
	}
	return nil
}

func (tc *testCluster) replication() int {
	if tc.base.ReplicationFactor == 0 {
		return DefaultReplicationFactor
	}
	return tc.base.ReplicationFactor
}

func (tc *testCluster) waitConverged(within time.Duration) {
	tc.t.Helper()
	waitFor(tc.t, within, "cluster converged", tc.converged)
}

// settleHooks waits until every live node has run the hooks of the map it holds.
func (tc *testCluster) settleHooks() {
	tc.t.Helper()
	for _, ck := range tc.live() {
		waitFor(tc.t, 5*time.Second, "hook events enqueued", func() error {
			if e, h := ck.Epoch(), ck.hooks.enqueued.Load(); h != e {
				return fmt.Errorf("%s holds epoch %d, hooks enqueued for %d", ck.GetMyNodeID(), e, h)
			}
			return nil
		})
		ck.hooks.dispatch.waitIdle()
	}
}

// pickVictim returns node-2 or node-3, whichever does not lead, and node-1 to observe the
// cluster from.
func (tc *testCluster) pickVictim() (string, *ClusterKit) {
	victim := "node-2"
	if tc.nodes[victim].IsLeader() {
		victim = "node-3"
	}
	return victim, tc.nodes["node-1"]
}

// leader returns the live node that leads, or nil.
func (tc *testCluster) leader() *ClusterKit {
	for _, ck := range tc.live() {
		if ck.IsLeader() {
			return ck
		}
	}
	return nil
}
