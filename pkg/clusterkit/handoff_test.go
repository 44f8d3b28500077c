package clusterkit

import (
	"context"
	"errors"
	"fmt"
	"github.com/clusterkit-go/clusterkit/internal/nextmap"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// mapLog records every map a node applies, to check invariants over all of them.
type mapLog struct {
	mu   sync.Mutex
	maps []*state.Map
}

// follow records the maps ck applies from now on, until the test ends.
func recordMaps(t *testing.T, ck *ClusterKit) *mapLog {
	l := &mapLog{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		var last uint64
		for {
			ch := ck.maps.changes()
			if s := ck.maps.snapshot(); s != nil && s.epoch != last {
				last = s.epoch
				l.mu.Lock()
				l.maps = append(l.maps, s.raw)
				l.mu.Unlock()
			}
			select {
			case <-ch:
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return l
}

func (l *mapLog) all() []*state.Map {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.maps)
}

// A joining node copies first and is routed to only after its hooks have returned: until then
// the old holders keep serving every partition, with R holders each.
func TestJoinHandsOffWithoutGap(t *testing.T) {
	tc := newTestCluster(t, Options{})
	tc.start("node-1")
	tc.start("node-2")
	tc.start("node-3")
	tc.waitConverged(10 * time.Second)
	watch := recordMaps(t, tc.nodes["node-1"])

	ck4, copying, release := tc.startCopyingJoiner("node-4")
	// While node-4 copies, no lookup on any node routes to it.
	for _, ck := range tc.live() {
		for i := 0; i < 16; i++ {
			for _, n := range ck.GetNodes(&Partition{ID: PartitionID(i)}) {
				if n.ID == "node-4" {
					t.Fatalf("%s routes partition-%d to node-4 before its copy finished", ck.GetMyNodeID(), i)
				}
			}
		}
	}
	close(release)
	tc.waitConverged(10 * time.Second)
	p := ck4.maps.snapshot()
	held := 0
	for i := range p.raw.Partitions {
		if slices.Contains(p.raw.Partitions[i].Holders, "node-4") {
			held++
		}
	}
	if held == 0 || int(copying.Load()) != held {
		t.Fatalf("node-4 holds %d partitions after %d copies", held, copying.Load())
	}
	for _, m := range watch.all() {
		for i := range m.Partitions {
			if n := len(m.Partitions[i].Holders); n < 3 {
				t.Fatalf("epoch %d: partition-%d served by %d holders during the join", m.Epoch, i, n)
			}
		}
	}
}

// A primary that crashes is replaced at once by a replica that has the data; the lost replica
// is then copied in through a handoff. Primary epochs grow with every change of primary.
func TestCrashPromotesReplicaAtOnce(t *testing.T) {
	tc := newTestCluster(t, Options{})
	for i := 1; i <= 4; i++ {
		tc.start(fmt.Sprintf("node-%d", i))
	}
	tc.waitConverged(10 * time.Second)
	victim, obs := tc.pickVictim()
	before := obs.maps.snapshot()
	watch := recordMaps(t, obs)
	tc.crash(victim)
	tc.waitConverged(10 * time.Second)

	// The first map without the victim: every partition it led has a surviving holder of the
	// old map as primary, with a higher primary epoch.
	var first *state.Map
	for _, m := range watch.all() {
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
		old, now := &before.raw.Partitions[i], &first.Partitions[i]
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
	p := &Partition{ID: "partition-0"}
	for _, ck := range tc.live() {
		e := ck.PrimaryEpoch(p)
		if ck.IsPrimary(p) != ck.IsPrimaryAt(p, e) || ck.IsPrimaryAt(p, e-1) {
			t.Fatalf("%s: IsPrimaryAt disagrees with IsPrimary at epoch %d", ck.GetMyNodeID(), e)
		}
	}
}

// A hook that fails (panics) or hangs is reported and asked again after HandoffTimeout, while the
// other partitions' handoffs complete and the old holders keep serving the stuck one.
func TestStuckHandoffIsRetried(t *testing.T) {
	tc := newTestCluster(t, Options{HandoffTimeout: 500 * time.Millisecond})
	tc.start("node-1")
	tc.start("node-2")
	tc.waitConverged(10 * time.Second)

	var mu sync.Mutex
	calls := map[string]int{}
	release := make(chan struct{})
	var stuck string
	ck3, err := NewClusterKit(tc.options("node-3"))
	if err != nil {
		t.Fatal(err)
	}
	ck3.OnPartitionChange(func(id string, from []*Node, to *Node) {
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
	if err := ck3.Start(); err != nil {
		t.Fatal(err)
	}
	tc.mu.Lock()
	tc.nodes["node-3"] = ck3
	tc.mu.Unlock()

	waitFor(t, 10*time.Second, "other handoffs done, stuck one retried", func() error {
		s := ck3.maps.snapshot()
		mu.Lock()
		defer mu.Unlock()
		if stuck == "" || calls[stuck] < 2 {
			return fmt.Errorf("stuck partition asked %d times", calls[stuck])
		}
		for i := range s.raw.Partitions {
			e := &s.raw.Partitions[i]
			if PartitionID(i) == stuck {
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
	resp, body := httpGet(t, "http://"+ck3.AdvertiseAddr()+"/cluster", nil)
	if resp.StatusCode != 200 || !contains(body, `"overdue":true`) || !contains(body, stuck) {
		t.Fatalf("/cluster does not report the overdue handoff: %s", body)
	}
	close(release)
	tc.waitConverged(10 * time.Second)
}

func contains(b []byte, s string) bool { return strings.Contains(string(b), s) }

// OnEvent tells a node which partitions it gained or lost, in which role, why, and when a copy
// it held has been released after a handoff.
func TestRoleEvents(t *testing.T) {
	tc := newTestCluster(t, Options{ReplicationFactor: 2})
	var mu sync.Mutex
	events := map[string][]Event{}
	start := func(id string) *ClusterKit {
		ck, err := NewClusterKit(tc.options(id))
		if err != nil {
			t.Fatal(err)
		}
		ck.OnEvent(func(ev Event) {
			mu.Lock()
			events[id] = append(events[id], ev)
			mu.Unlock()
		})
		if err := ck.Start(); err != nil {
			t.Fatal(err)
		}
		tc.mu.Lock()
		tc.nodes[id] = ck
		tc.mu.Unlock()
		return ck
	}
	start("node-1")
	tc.settleHooks()
	mu.Lock()
	for _, ev := range events["node-1"] {
		if ev.Role != RolePrimary || ev.PreviousRole != RoleNone || ev.Reason != state.ReasonCreate {
			t.Fatalf("first node: %+v", ev)
		}
	}
	if len(events["node-1"]) != 16 {
		t.Fatalf("first node got %d events, want 16", len(events["node-1"]))
	}
	events["node-1"] = nil
	mu.Unlock()

	start("node-2")
	tc.waitConverged(10 * time.Second)
	tc.settleHooks()
	mu.Lock()
	var pending, gained int
	for _, ev := range events["node-2"] {
		switch {
		case ev.Role == RolePending:
			pending++
			if len(ev.CopyFrom) == 0 || ev.Reason != state.ReasonJoin || ev.MapEpoch == 0 {
				t.Errorf("pending event without sources, reason or epoch: %+v", ev)
			}
		case ev.PreviousRole == RolePending && ev.Role >= RoleReplica:
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
	tc.start("node-3")
	tc.waitConverged(10 * time.Second)
	tc.settleHooks()
	mu.Lock()
	defer mu.Unlock()
	released := 0
	for _, id := range []string{"node-1", "node-2"} {
		for _, ev := range events[id] {
			if ev.Released {
				released++
				if ev.Role != RoleNone || ev.Reason != state.ReasonHandoff {
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

// Draining hands every partition over before leaving: no map ever has a partition with fewer
// holders than the replication factor.
func TestDrainNeverUnderReplicates(t *testing.T) {
	tc := newTestCluster(t, Options{})
	for i := 1; i <= 4; i++ {
		tc.start(fmt.Sprintf("node-%d", i))
	}
	tc.waitConverged(10 * time.Second)
	victim, _ := tc.pickVictim()
	watchers := []*mapLog{}
	for _, ck := range tc.live() {
		if ck.GetMyNodeID() != victim {
			watchers = append(watchers, recordMaps(t, ck))
		}
	}
	ck := tc.nodes[victim]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := ck.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	tc.mu.Lock()
	delete(tc.nodes, victim)
	tc.mu.Unlock()
	tc.waitConverged(10 * time.Second)
	for _, w := range watchers {
		for _, m := range w.all() {
			for i := range m.Partitions {
				if n := len(m.Partitions[i].Holders); n < 3 {
					t.Fatalf("epoch %d: partition-%d has %d holders during the drain", m.Epoch, i, n)
				}
			}
		}
	}
}

// A crashed node that comes back within the grace period gets its partitions back; meanwhile its
// primaries were promoted at once and nothing was copied to any other node.
func TestCrashGracePeriod(t *testing.T) {
	tc := newTestCluster(t, Options{CrashGracePeriod: time.Minute})
	for i := 1; i <= 4; i++ {
		tc.start(fmt.Sprintf("node-%d", i))
	}
	tc.waitConverged(10 * time.Second)
	victim, obs := tc.pickVictim()
	before := obs.maps.snapshot().raw
	watch := recordMaps(t, obs)
	tc.crash(victim)
	waitFor(t, 10*time.Second, "crash noticed", func() error {
		if _, ok := obs.maps.snapshot().nodes[victim]; ok {
			return errors.New("still listed")
		}
		return nil
	})
	during := obs.maps.snapshot().raw
	if _, ok := during.Absent[victim]; !ok {
		t.Fatalf("crashed node not kept as absent: %v", during.Absent)
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
	tc.start(victim)
	tc.waitConverged(10 * time.Second)
	after := obs.maps.snapshot().raw
	for i := range after.Partitions {
		if !slices.Equal(sorted(after.Partitions[i].Holders), sorted(before.Partitions[i].Holders)) {
			t.Fatalf("partition-%d: holders %v before the crash, %v after the return", i, before.Partitions[i].Holders, after.Partitions[i].Holders)
		}
	}
	for _, m := range watch.all() {
		for i := range m.Partitions {
			for _, pd := range m.Partitions[i].Pending {
				if pd.Node != victim {
					t.Fatalf("epoch %d: partition-%d copied to %s", m.Epoch, i, pd.Node)
				}
			}
		}
	}
}

func sorted(s []string) []string { c := slices.Clone(s); slices.Sort(c); return c }

// Twenty nodes starting at once produce a few membership maps, not one per node. The maps that
// then complete their handoffs follow the acknowledgements as they arrive (coalesced over the same
// window): how many there are depends on how the twenty nodes' starts spread in time, so they are
// reported and bounded loosely, while the membership maps are held to a few.
func TestJoinStormIsCoalesced(t *testing.T) {
	tc := newTestCluster(t, Options{PartitionCount: 64})
	tc.start("node-0")
	first := tc.nodes["node-0"].Epoch()
	// Every map the cluster publishes from now on, straight from etcd (a node's snapshot could
	// skip one).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wch := tc.etcd.Client.Watch(ctx, keys.New(tc.name).Partitions())
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
			if _, err := tc.tryStart(fmt.Sprintf("node-%d", i)); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	tc.waitConverged(30 * time.Second)
	waitFor(t, 30*time.Second, "handoffs completed", func() error {
		if n := nextmap.Pending(tc.nodes["node-0"].maps.snapshot().raw); n > 0 {
			return fmt.Errorf("%d handoffs pending", n)
		}
		return nil
	})
	r, err := state.ReadMap(context.Background(), tc.etcd.Client, keys.New(tc.name), 0)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "every map watched", func() error {
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
	for _, c := range causes {
		if c != state.ReasonHandoff {
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
	tc := newTestCluster(t, Options{ShutdownTimeout: time.Second})
	tc.start("node-1")
	tc.start("node-2")
	tc.waitConverged(10 * time.Second)
	p := &Partition{ID: "partition-0"}
	var primary *ClusterKit
	for _, ck := range tc.live() {
		if ck.IsPrimary(p) {
			primary = ck
		}
	}
	if primary == nil || primary.IsFenced() {
		t.Fatal("no unfenced primary of partition-0")
	}
	deadline := primary.clock.Deadline()
	tc.etcd.Member.Close()
	waitFor(t, 2*time.Second+time.Second, "primary fenced", func() error {
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
	resp, _ := httpGet(t, "http://"+primary.AdvertiseAddr()+"/health", nil)
	if resp.StatusCode != 503 {
		t.Fatalf("/health of a fenced node: %s", resp.Status)
	}
	for _, ck := range tc.live() {
		start := time.Now()
		tc.stop(ck.GetMyNodeID())
		t.Logf("stop without etcd took %v", time.Since(start))
	}
}

// A leader killed in the middle of a handoff: the next leader picks the pending copies up from
// the map and the acknowledgements in etcd, and completes them.
func TestLeaderCrashDuringHandoff(t *testing.T) {
	tc := newTestCluster(t, Options{})
	tc.start("node-1")
	tc.start("node-2")
	tc.start("node-3")
	tc.waitConverged(10 * time.Second)
	ck4, _, release := tc.startCopyingJoiner("node-4")
	leader := tc.leader().GetMyNodeID()
	if leader == "node-4" {
		t.Skip("the joiner leads; nothing to test")
	}
	tc.crash(leader)
	waitFor(t, 10*time.Second, "a new leader", func() error {
		for _, ck := range tc.live() {
			if ck.IsLeader() {
				return nil
			}
		}
		return errors.New("none")
	})
	close(release)
	tc.waitConverged(15 * time.Second)
	if s := ck4.maps.snapshot(); s.leader == leader || !s.involves("node-4") {
		t.Fatalf("handoff not completed by the new leader (map by %s)", s.leader)
	}
}

// startCopyingJoiner starts node id with a hook that blocks every copy it is asked to make until
// release is closed, and returns once a copy has started. copying counts the copies asked.
func (tc *testCluster) startCopyingJoiner(id string) (ck *ClusterKit, copying *atomic.Int32, release chan struct{}) {
	t := tc.t
	t.Helper()
	release = make(chan struct{})
	copying = new(atomic.Int32)
	ck, err := NewClusterKit(tc.options(id))
	if err != nil {
		t.Fatal(err)
	}
	ck.OnPartitionChange(func(partitionID string, from []*Node, to *Node) {
		if to.ID != id {
			return
		}
		if len(from) == 0 {
			t.Errorf("%s: asked to copy with no source", partitionID)
		}
		copying.Add(1)
		<-release
	})
	if err := ck.Start(); err != nil {
		t.Fatal(err)
	}
	tc.mu.Lock()
	tc.nodes[id] = ck
	tc.mu.Unlock()
	waitFor(t, 10*time.Second, id+" copying", func() error {
		if copying.Load() == 0 {
			return errors.New("no copy started")
		}
		return nil
	})
	return ck, copying, release
}
