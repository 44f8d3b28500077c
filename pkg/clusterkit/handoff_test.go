package clusterkit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/follow"
	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/mapstore"
	"github.com/clusterkit-go/clusterkit/internal/nextmap"
	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
	"github.com/clusterkit-go/clusterkit/pkg/clustertest"
	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// mapLog records every map a node applies, to check invariants over all of them.
type mapLog struct {
	mu   sync.Mutex
	maps []*state.Map
}

// recordMaps records the map published in c's etcd now and every one after it, in order,
// straight from etcd's watch (a node's snapshot could skip one), until the test ends.
func recordMaps(t *testing.T, c *clustertest.Cluster) *mapLog {
	t.Helper()
	l := &mapLog{}
	ctx, cancel := context.WithCancel(context.Background())
	f := &follow.Map{Client: c.Etcd(), Schema: keys.New(c.Name()), Log: zap.NewNop(), Apply: func(u follow.Update) {
		l.mu.Lock()
		l.maps = append(l.maps, u.Map)
		l.mu.Unlock()
	}}
	r, err := f.Read(ctx)
	if err != nil || r.Map == nil {
		cancel()
		t.Fatalf("read the map: %v", err)
	}
	l.maps = append(l.maps, r.Map)
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx, r.Revision, r.Map) }()
	t.Cleanup(func() { cancel(); <-done })
	return l
}

// all returns the maps recorded, once the recorder has seen the epoch c's nodes hold.
func (l *mapLog) all(t *testing.T, c *clustertest.Cluster) []*state.Map {
	t.Helper()
	var want uint64
	for _, ck := range c.Nodes() {
		want = max(want, ck.Epoch())
	}
	etcdtest.WaitFor(t, 5*time.Second, "every published map recorded", func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if last := l.maps[len(l.maps)-1].Epoch; last < want {
			return fmt.Errorf("recorded up to epoch %d of %d", last, want)
		}
		return nil
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.maps)
}

// A joining node copies first and is routed to only after its hooks have returned: until then
// the old holders keep serving every partition, with R holders each.
func TestJoinHandsOffWithoutGap(t *testing.T) {
	// Nothing may crash here: a 5s lease keeps a node that a loaded machine (the suite runs other
	// packages' node processes beside it) stalls for 2s from being taken for dead, which would
	// make the joiner restore partitions from no holder at all.
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16, LeaseTTL: 5 * time.Second})
	c.Add("node-1")
	c.Add("node-2")
	c.Add("node-3")
	c.WaitConverged(10 * time.Second)
	watch := recordMaps(t, c)

	ck4, copying, release := startCopyingJoiner(t, c, "node-4")
	// While node-4 copies, no lookup on any node routes to it.
	for _, ck := range c.Nodes() {
		for i := 0; i < 16; i++ {
			for _, n := range ck.GetNodes(&clusterkit.Partition{ID: clusterkit.PartitionID(i)}) {
				if n.ID == "node-4" {
					t.Fatalf("%s routes partition-%d to node-4 before its copy finished", ck.GetMyNodeID(), i)
				}
			}
		}
	}
	close(release)
	c.WaitConverged(10 * time.Second)
	p := clusterkit.RawMap(ck4)
	held := 0
	for i := range p.Partitions {
		if slices.Contains(p.Partitions[i].Holders, "node-4") {
			held++
		}
	}
	if held == 0 || int(copying.Load()) != held {
		t.Fatalf("node-4 holds %d partitions after %d copies", held, copying.Load())
	}
	// Every map published during the join: three holders each, and node-4 a holder of a
	// partition only after a map asked it to copy that partition (the test kit's checker also
	// verifies that node-4 had acknowledged the copy by then).
	asked := map[int]bool{}
	for _, m := range watch.all(t, c) {
		for i := range m.Partitions {
			e := &m.Partitions[i]
			if n := len(e.Holders); n < 3 {
				t.Fatalf("epoch %d: partition-%d served by %d holders during the join", m.Epoch, i, n)
			}
			if slices.Contains(e.Holders, "node-4") && !asked[i] {
				t.Fatalf("epoch %d: partition-%d routes to node-4, which no earlier map asked to copy it", m.Epoch, i)
			}
			if _, ok := e.PendingFor("node-4"); ok {
				asked[i] = true
			}
		}
	}
}

// Maps published while a copy is still running keep routing around the copying node: here a
// second node joins while node-4's hooks hang, so the leader publishes maps that still list
// node-4's copies as pending. No node routes to node-4 until its hooks return, and every map is
// checked against the acknowledgements in etcd (the test kit's checker).
func TestNoRoutingBeforeAcknowledgement(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16})
	for i := 1; i <= 3; i++ {
		c.Add(fmt.Sprintf("node-%d", i))
	}
	c.WaitConverged(10 * time.Second)
	_, _, release := startCopyingJoiner(t, c, "node-4")
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	joining := c.Node("node-1").Epoch()
	c.Add("node-5")
	etcdtest.WaitFor(t, 10*time.Second, "a map after node-5's join on every node", func() error {
		for id, ck := range c.Nodes() {
			if ck.Epoch() <= joining {
				return fmt.Errorf("%s at epoch %d", id, ck.Epoch())
			}
		}
		return nil
	})
	for id, ck := range c.Nodes() {
		for i := 0; i < 16; i++ {
			for _, n := range ck.GetNodes(&clusterkit.Partition{ID: clusterkit.PartitionID(i)}) {
				if n.ID == "node-4" {
					t.Fatalf("%s routes partition-%d to node-4 while its copy runs", id, i)
				}
			}
		}
	}
	if bad := c.Violations(); len(bad) > 0 {
		t.Fatalf("invariants broken while node-4 copies: %q", bad)
	}
	close(release)
	released = true
	c.WaitConverged(20 * time.Second)
}

// A primary that crashes is replaced at once by a replica that has the data; the lost replica
// is then copied in through a handoff. Primary epochs grow with every change of primary.
func TestCrashPromotesReplicaAtOnce(t *testing.T) {
	c, victim, _, before, watch := killOneOfFour(t, clusterkit.Options{PartitionCount: 16})
	c.WaitConverged(10 * time.Second)

	// The first map without the victim: every partition it led has a surviving holder of the
	// old map as primary, with a higher primary epoch.
	var first *state.Map
	for _, m := range watch.all(t, c) {
		if _, ok := m.Nodes[victim]; !ok {
			first = m
			break
		}
	}
	if first == nil {
		t.Fatal("no map without the crashed node")
	}
	promoted := 0
	for i := range first.Partitions {
		old, now := &before.Partitions[i], &first.Partitions[i]
		if old.Holders[0] != victim {
			if now.Holders[0] != old.Holders[0] || now.PrimaryEpoch != old.PrimaryEpoch {
				t.Errorf("partition-%d changed primary %s->%s though its primary lived", i, old.Holders[0], now.Holders[0])
			}
			continue
		}
		promoted++
		if !slices.Contains(old.Holders, now.Holders[0]) {
			t.Errorf("partition-%d: new primary %s did not hold the data", i, now.Holders[0])
		}
		if now.PrimaryEpoch <= old.PrimaryEpoch || now.PrimaryEpoch != first.Epoch {
			t.Errorf("partition-%d: primary epoch %d -> %d at map %d", i, old.PrimaryEpoch, now.PrimaryEpoch, first.Epoch)
		}
		if len(now.Pending) == 0 {
			t.Errorf("partition-%d: no replacement replica asked to copy", i)
		}
	}
	if promoted == 0 {
		t.Fatal("the victim led no partition")
	}
	if first.Cause.Reason != state.ReasonCrash || !slices.Equal(first.Cause.Nodes, []string{victim}) {
		t.Fatalf("cause %+v, want crash of %s", first.Cause, victim)
	}
	// Fencing: the primary epoch of a partition tells its current primary apart.
	p := &clusterkit.Partition{ID: "partition-0"}
	for _, ck := range c.Nodes() {
		e := ck.PrimaryEpoch(p)
		if ck.IsPrimary(p) != ck.IsPrimaryAt(p, e) || ck.IsPrimaryAt(p, e-1) {
			t.Fatalf("%s: IsPrimaryAt disagrees with IsPrimary at epoch %d", ck.GetMyNodeID(), e)
		}
	}
}

// A hook that fails (panics) or hangs is reported and asked again after HandoffTimeout, while the
// other partitions' handoffs complete and the old holders keep serving the stuck one.
func TestStuckHandoffIsRetried(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16, HandoffTimeout: 500 * time.Millisecond})
	c.Add("node-1")
	c.Add("node-2")
	c.WaitConverged(10 * time.Second)

	var mu sync.Mutex
	calls := map[string]int{}
	release := make(chan struct{})
	var stuck string
	ck3 := c.Add("node-3", func(ck *clusterkit.ClusterKit) {
		ck.OnPartitionChange(func(id string, from []*clusterkit.Node, to *clusterkit.Node) {
			if to.ID != "node-3" {
				return
			}
			mu.Lock()
			calls[id]++
			n := calls[id]
			if stuck == "" {
				stuck = id
			}
			first := id == stuck
			mu.Unlock()
			if first && n == 1 {
				panic("copy failed")
			}
			if first && n == 2 {
				<-release // hangs: the next retry queues behind it
			}
		})
	})

	etcdtest.WaitFor(t, 10*time.Second, "other handoffs done, stuck one retried", func() error {
		m := clusterkit.RawMap(ck3)
		mu.Lock()
		defer mu.Unlock()
		if stuck == "" || calls[stuck] < 2 {
			return fmt.Errorf("stuck partition asked %d times", calls[stuck])
		}
		for i := range m.Partitions {
			e := &m.Partitions[i]
			if clusterkit.PartitionID(i) == stuck {
				pd, ok := e.PendingFor("node-3")
				if !ok || pd.Attempt < 2 || len(e.Holders) < 2 {
					return fmt.Errorf("stuck partition: pending %v holders %v", e.Pending, e.Holders)
				}
				continue
			}
			if len(e.Pending) > 0 {
				return fmt.Errorf("partition-%d still pending", i)
			}
		}
		return nil
	})
	// /cluster reports it.
	a := poll(ck3.AdvertiseAddr(), "", "", 5*time.Second)
	if a.err != nil || a.code != 200 || !contains(a.body, `"overdue":true`) || !contains(a.body, stuck) {
		t.Fatalf("/cluster does not report the overdue handoff: %d %s %v", a.code, a.body, a.err)
	}
	close(release)
	c.WaitConverged(10 * time.Second)
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }

// OnEvent tells a node which partitions it gained or lost, in which role, why, and when a copy
// it held has been released after a handoff.
func TestRoleEvents(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16, ReplicationFactor: 2})
	var mu sync.Mutex
	events := map[string][]clusterkit.Event{}
	record := func(ck *clusterkit.ClusterKit) {
		id := ck.GetMyNodeID()
		copying(ck)
		ck.OnEvent(func(ev clusterkit.Event) {
			mu.Lock()
			events[id] = append(events[id], ev)
			mu.Unlock()
		})
	}
	c.Add("node-1", record)
	settleHooks(t, c)
	mu.Lock()
	for _, ev := range events["node-1"] {
		if ev.Role != clusterkit.RolePrimary || ev.PreviousRole != clusterkit.RoleNone || ev.Reason != state.ReasonCreate {
			t.Fatalf("first node: %+v", ev)
		}
	}
	if len(events["node-1"]) != 16 {
		t.Fatalf("first node got %d events, want 16", len(events["node-1"]))
	}
	events["node-1"] = nil
	mu.Unlock()

	c.Add("node-2", record)
	c.WaitConverged(10 * time.Second)
	settleHooks(t, c)
	mu.Lock()
	var pending, gained int
	for _, ev := range events["node-2"] {
		switch {
		case ev.Role == clusterkit.RolePending:
			pending++
			if len(ev.CopyFrom) == 0 || ev.Reason != state.ReasonJoin || ev.MapEpoch == 0 {
				t.Errorf("pending event without sources, reason or epoch: %+v", ev)
			}
		case ev.PreviousRole == clusterkit.RolePending && ev.Role >= clusterkit.RoleReplica:
			gained++
			if ev.Reason != state.ReasonHandoff {
				t.Errorf("gained after copy with reason %q", ev.Reason)
			}
		default:
			t.Errorf("unexpected event on the joiner: %+v", ev)
		}
	}
	if pending != 16 || gained != 16 {
		t.Fatalf("node-2 (R=2, 2 nodes): %d pending, %d gained, want 16 and 16", pending, gained)
	}
	events["node-1"], events["node-2"] = nil, nil
	mu.Unlock()

	// A third node takes a share: the nodes it takes from get Released once it has copied.
	c.Add("node-3", copying)
	c.WaitConverged(10 * time.Second)
	settleHooks(t, c)
	mu.Lock()
	defer mu.Unlock()
	released := 0
	for _, id := range []string{"node-1", "node-2"} {
		for _, ev := range events[id] {
			if ev.Released {
				released++
				if ev.Role != clusterkit.RoleNone || ev.Reason != state.ReasonHandoff {
					t.Errorf("released event: %+v", ev)
				}
			}
		}
	}
	// node-3 takes 10 or 11 of the 32 replica slots, each released by one of the others.
	if released < 10 || released > 11 {
		t.Fatalf("%d released after node-3 joined, want 10 or 11", released)
	}
}

// A node without an OnPartitionChange hook copies nothing in: its record says no_handoff, and
// the map that takes it in routes to it at once, with no copy asked and no completion map. A
// node with a hook is asked to copy as before; one that registers its hook after Start says so
// in its record, and copies from then on.
func TestNodeWithoutHookServesAtOnce(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16, ReplicationFactor: 2})
	c.Add("node-1", copying)
	c.WaitConverged(10 * time.Second)
	watch := recordMaps(t, c)
	c.Add("node-2")
	c.WaitConverged(10 * time.Second)
	maps := watch.all(t, c)
	var joined *state.Map
	for _, m := range maps {
		if _, ok := m.Nodes["node-2"]; ok {
			joined = m
			break
		}
	}
	if joined == nil || !joined.Nodes["node-2"].NoHandoff {
		t.Fatalf("no map lists node-2 with no_handoff: %+v", joined)
	}
	for i, e := range joined.Partitions {
		if !slices.Contains(e.Holders, "node-2") || len(e.Pending) > 0 {
			t.Errorf("partition-%d in the map that takes node-2 in: holders %v, pending %v", i, e.Holders, e.Pending)
		}
	}
	if last := maps[len(maps)-1]; last.Epoch != joined.Epoch {
		t.Errorf("maps after the one that took node-2 in: epochs %d to %d (%s)", joined.Epoch, last.Epoch, last.Cause.Reason)
	}

	// A hook registered after Start: the record says so at once.
	copying(c.Node("node-2"))
	resp, err := c.Etcd().Get(context.Background(), keys.New(c.Name()).Node("node-2"))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("node-2's record: %v, %d keys", err, len(resp.Kvs))
	}
	if rec, err := state.DecodeNode(resp.Kvs[0].Value); err != nil || rec.NoHandoff {
		t.Fatalf("node-2's record after it registered a hook: %+v, %v", rec, err)
	}

	// A node with a hook is asked to copy before it is routed to.
	c.Add("node-3", copying)
	c.WaitConverged(10 * time.Second)
	asked := 0
	for _, m := range watch.all(t, c) {
		if _, ok := m.Nodes["node-3"]; !ok {
			continue
		}
		for i, e := range m.Partitions {
			if slices.ContainsFunc(e.Pending, func(p state.Pending) bool { return p.Node == "node-3" }) {
				asked++
			}
			if slices.Contains(e.Holders, "node-3") {
				t.Errorf("partition-%d routes to node-3 in the map that takes it in", i)
			}
		}
		break
	}
	if asked == 0 {
		t.Error("node-3, which has a hook, was asked to copy nothing")
	}
}

// Draining hands every partition over before leaving: no map ever has a partition with fewer
// holders than the replication factor.
func TestDrainNeverUnderReplicates(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16})
	for i := 1; i <= 4; i++ {
		c.Add(fmt.Sprintf("node-%d", i))
	}
	c.WaitConverged(10 * time.Second)
	victim, _ := pickVictim(c)
	watch := recordMaps(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c.Drain(ctx, victim)
	c.WaitConverged(10 * time.Second)
	for _, m := range watch.all(t, c) {
		for i := range m.Partitions {
			if n := len(m.Partitions[i].Holders); n < 3 {
				t.Fatalf("epoch %d: partition-%d has %d holders during the drain", m.Epoch, i, n)
			}
		}
	}
}

// A crashed node that comes back within the grace period gets its partitions back; meanwhile its
// primaries were promoted at once and nothing was copied to any other node.
func TestCrashGracePeriod(t *testing.T) {
	c, victim, obs, before, watch := killOneOfFour(t, clusterkit.Options{PartitionCount: 16, CrashGracePeriod: time.Minute})
	etcdtest.WaitFor(t, 10*time.Second, "crash noticed", func() error {
		if _, ok := clusterkit.RawMap(obs).Nodes[victim]; ok {
			return errors.New("still listed")
		}
		return nil
	})
	during := clusterkit.RawMap(obs)
	if _, ok := during.Absent[victim]; !ok {
		t.Fatalf("crashed node not kept as absent: %v", during.Absent)
	}
	// GET /cluster says so: the crashed node is down, and not among the nodes.
	var doc wire.Cluster
	if a := poll(obs.AdvertiseAddr(), "", "", 5*time.Second); a.err != nil || a.code != http.StatusOK || json.Unmarshal(a.body, &doc) != nil {
		t.Fatalf("GET /cluster: %d %s %v", a.code, a.body, a.err)
	}
	if _, listed := doc.Cluster.Nodes[victim]; listed || !doc.Cluster.Down[victim].Since.Equal(during.Absent[victim].Since) {
		t.Fatalf("GET /cluster: nodes %v, down %v; want %s down since %v", slices.Sorted(maps.Keys(doc.Cluster.Nodes)),
			doc.Cluster.Down, victim, during.Absent[victim].Since)
	}
	for i := range during.Partitions {
		e := &during.Partitions[i]
		if len(e.Pending) > 0 {
			t.Fatalf("partition-%d copied elsewhere during the grace period: %v", i, e.Pending)
		}
		if before.Partitions[i].Holders[0] == victim && e.Holders[0] == victim {
			t.Fatalf("partition-%d still led by the crashed node", i)
		}
	}
	c.Add(victim)
	c.WaitConverged(10 * time.Second)
	after := clusterkit.RawMap(obs)
	for i := range after.Partitions {
		if !slices.Equal(sorted(after.Partitions[i].Holders), sorted(before.Partitions[i].Holders)) {
			t.Fatalf("partition-%d: holders %v before the crash, %v after the return", i, before.Partitions[i].Holders, after.Partitions[i].Holders)
		}
	}
	for _, m := range watch.all(t, c) {
		for i := range m.Partitions {
			for _, pd := range m.Partitions[i].Pending {
				if pd.Node != victim {
					t.Fatalf("epoch %d: partition-%d copied to %s", m.Epoch, i, pd.Node)
				}
			}
		}
	}
}

// killOneOfFour starts four nodes with opts, records every map published from then on, and
// kills (kill -9) a node that does not lead. It returns the cluster, the victim, a node to
// observe from, the observer's map before the kill and the recorder.
func killOneOfFour(t *testing.T, opts clusterkit.Options) (c *clustertest.Cluster, victim string, obs *clusterkit.ClusterKit, before *state.Map, watch *mapLog) {
	t.Helper()
	c = clustertest.New(t, opts)
	for i := 1; i <= 4; i++ {
		c.Add(fmt.Sprintf("node-%d", i), copying)
	}
	c.WaitConverged(10 * time.Second)
	victim, obs = pickVictim(c)
	before = clusterkit.RawMap(obs)
	watch = recordMaps(t, c)
	c.Kill(victim)
	return c, victim, obs, before, watch
}

// copying gives a node a copy hook that does nothing: without one, partitions reach it without
// a handoff (its record says no_handoff), and these tests are about handoffs.
func copying(ck *clusterkit.ClusterKit) {
	ck.OnPartitionChange(func(string, []*clusterkit.Node, *clusterkit.Node) {})
}

func sorted(s []string) []string { c := slices.Clone(s); slices.Sort(c); return c }

// Twenty nodes starting at once produce a few membership maps, not one per node. The maps that
// then complete their handoffs follow the acknowledgements as they arrive (coalesced over the same
// window): how many there are depends on how the twenty nodes' starts spread in time, so they are
// reported and bounded loosely, while the membership maps are held to a few.
func TestJoinStormIsCoalesced(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 64})
	first := c.Add("node-0").Epoch()
	// Every map the cluster publishes from now on, straight from etcd (a node's snapshot could
	// skip one).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wch := c.Etcd().Watch(ctx, keys.New(c.Name()).Partitions())
	var (
		mu     sync.Mutex
		causes []string
		last   uint64
	)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for resp := range wch {
			for _, ev := range resp.Events {
				if m, err := state.DecodeHead(ev.Kv.Value); err == nil && ev.Type == clientv3.EventTypePut && m.Epoch > first {
					mu.Lock()
					causes, last = append(causes, m.Cause.Reason), m.Epoch
					mu.Unlock()
				}
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 1; i <= 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := c.TryStart(c.Options(fmt.Sprintf("node-%d", i))); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	c.WaitConverged(30 * time.Second)
	etcdtest.WaitFor(t, 30*time.Second, "handoffs completed", func() error {
		if n := nextmap.Pending(clusterkit.RawMap(c.Node("node-0"))); n > 0 {
			return fmt.Errorf("%d handoffs pending", n)
		}
		return nil
	})
	r, err := mapstore.ReadMap(context.Background(), c.Etcd(), keys.New(c.Name()), 0)
	if err != nil {
		t.Fatal(err)
	}
	etcdtest.WaitFor(t, 5*time.Second, "every map watched", func() error {
		mu.Lock()
		defer mu.Unlock()
		if last < r.Map.Epoch {
			return fmt.Errorf("watched up to epoch %d of %d", last, r.Map.Epoch)
		}
		return nil
	})
	cancel()
	<-watched
	membership := 0
	for _, cause := range causes {
		if cause != state.ReasonHandoff {
			membership++
		}
	}
	t.Logf("20 joins at once: %d map epochs, %d for membership; causes %v", r.Map.Epoch-first, membership, causes)
	if len(causes) != int(r.Map.Epoch-first) {
		t.Fatalf("watched %d maps, epochs went from %d to %d", len(causes), first, r.Map.Epoch)
	}
	if membership > 6 {
		t.Fatalf("20 joins at once took %d membership maps", membership)
	}
	// Each map but the membership ones completes at least one handoff, and there are at most
	// as many acknowledgement batches as (node, map) pairs: a loose bound that still catches a
	// map per partition.
	if handoffs := len(causes) - membership; handoffs > 20*membership {
		t.Fatalf("20 joins at once took %d handoff-completion maps", handoffs)
	}
}

// A node that cannot renew its lease stops claiming primary roles by its lease deadline, without
// any help from etcd.
func TestSelfFencingWhenEtcdIsGone(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16, ShutdownTimeout: time.Second})
	c.Add("node-1")
	c.Add("node-2")
	c.WaitConverged(10 * time.Second)
	p := &clusterkit.Partition{ID: "partition-0"}
	var primary *clusterkit.ClusterKit
	for _, ck := range c.Nodes() {
		if ck.IsPrimary(p) {
			primary = ck
		}
	}
	if primary == nil || primary.IsFenced() {
		t.Fatal("no unfenced primary of partition-0")
	}
	// etcd is gone for every node: pausing a node's proxy leaves it unable to reach etcd, as if
	// etcd itself had stopped (its open connections are cut, so no renewal is in flight).
	for id := range c.Nodes() {
		c.Pause(id)
	}
	// Read after etcd is gone: no renewal can move the deadline any more.
	deadline := clusterkit.LeaseDeadline(primary)
	if left := time.Until(deadline); left > clustertest.DefaultLeaseTTL {
		t.Fatalf("lease deadline %v away, beyond the %v TTL", left, clustertest.DefaultLeaseTTL)
	}
	// The node fences itself at its lease deadline (TTL less 10% after the last renewal was
	// sent): the poll allows the deadline plus its own interval, nothing more.
	etcdtest.WaitFor(t, time.Until(deadline)+100*time.Millisecond, "primary fenced by its lease deadline", func() error {
		if !primary.IsFenced() {
			return errors.New("still claims its roles")
		}
		return nil
	})
	if primary.IsPrimary(p) || primary.IsPrimaryAt(p, primary.PrimaryEpoch(p)) {
		t.Fatal("a fenced node claims to be primary")
	}
	if now := time.Now(); now.Before(deadline) {
		t.Fatalf("fenced %v before the lease deadline", deadline.Sub(now))
	}
	resp, err := http.Get("http://" + primary.AdvertiseAddr() + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("/health of a fenced node: %s", resp.Status)
	}
	for id := range c.Nodes() {
		start := time.Now()
		c.Stop(id)
		t.Logf("stop without etcd took %v", time.Since(start))
	}
}

// A leader killed in the middle of a handoff: the next leader picks the pending copies up from
// the map and the acknowledgements in etcd, and completes them.
func TestLeaderCrashDuringHandoff(t *testing.T) {
	c := clustertest.New(t, clusterkit.Options{PartitionCount: 16})
	c.Add("node-1")
	c.Add("node-2")
	c.Add("node-3")
	c.WaitConverged(10 * time.Second)
	ck4, _, release := startCopyingJoiner(t, c, "node-4")
	leader := leaderOf(c).GetMyNodeID()
	if leader == "node-4" {
		t.Skip("the joiner leads; nothing to test")
	}
	c.Kill(leader)
	etcdtest.WaitFor(t, 10*time.Second, "a new leader", func() error {
		if leaderOf(c) == nil {
			return errors.New("none")
		}
		return nil
	})
	close(release)
	c.WaitConverged(15 * time.Second)
	if m := clusterkit.RawMap(ck4); m.Leader == leader || !involves(m, "node-4") {
		t.Fatalf("handoff not completed by the new leader (map by %s)", m.Leader)
	}
}

// involves reports whether node holds or is copying any partition in m.
func involves(m *state.Map, node string) bool {
	for i := range m.Partitions {
		e := &m.Partitions[i]
		if _, pending := e.PendingFor(node); pending || slices.Contains(e.Holders, node) {
			return true
		}
	}
	return false
}

// startCopyingJoiner starts node id with a hook that blocks every copy it is asked to make until
// release is closed, and returns once a copy has started. copying counts the copies asked.
func startCopyingJoiner(t *testing.T, c *clustertest.Cluster, id string) (ck *clusterkit.ClusterKit, copying *atomic.Int32, release chan struct{}) {
	t.Helper()
	release = make(chan struct{})
	copying = new(atomic.Int32)
	ck = c.Add(id, func(ck *clusterkit.ClusterKit) {
		ck.OnPartitionChange(func(partitionID string, from []*clusterkit.Node, to *clusterkit.Node) {
			if to.ID != id {
				return
			}
			if len(from) == 0 {
				t.Errorf("%s: asked to copy with no source", partitionID)
			}
			copying.Add(1)
			<-release
		})
	})
	etcdtest.WaitFor(t, 10*time.Second, id+" copying", func() error {
		if copying.Load() == 0 {
			return errors.New("no copy started")
		}
		return nil
	})
	return ck, copying, release
}
