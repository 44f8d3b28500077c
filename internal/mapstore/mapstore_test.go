package mapstore_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/clusterkit-go/clusterkit/internal/etcdtest"
	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/mapstore"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

func TestMain(m *testing.M) { os.Exit(etcdtest.RunWithoutLeaks(m)) }

// store writes maps as the leader does (state.Encoded.Writes, mapstore.Ops), without the
// leader's guards.
type store struct {
	t        *testing.T
	c        *clientv3.Client
	s        keys.Schema
	maxValue int
	cur      *state.Map
	written  int
}

func (st *store) publish(next *state.Map) state.Encoded {
	st.t.Helper()
	enc, err := state.EncodeNext(st.cur, next, st.maxValue)
	if err != nil {
		st.t.Fatal(err)
	}
	before, head := enc.Writes(st.s, next.Epoch, st.maxValue)
	ctx := context.Background()
	for _, op := range mapstore.Ops(before) {
		if _, err := st.c.Txn(ctx).Then(op).Commit(); err != nil {
			st.t.Fatal(err)
		}
	}
	if _, err := st.c.Txn(ctx).Then(mapstore.Ops(head)...).Commit(); err != nil {
		st.t.Fatal(err)
	}
	st.written = enc.Bytes()
	st.cur = next
	return enc
}

func testMap(partitions int) *state.Map {
	m := &state.Map{Epoch: 1, Leader: "n0", Nodes: map[string]state.Node{}}
	for i := range 6 {
		id := fmt.Sprintf("n%d", i)
		m.Nodes[id] = state.Node{ID: id, IP: "127.0.0.1:1"}
	}
	for p := range partitions {
		m.Partitions = append(m.Partitions, state.Entry{Holders: []string{fmt.Sprintf("n%d", p%6), fmt.Sprintf("n%d", (p+1)%6)}, PrimaryEpoch: 1})
	}
	return m
}

// mutate returns the map after m with k random partitions changed, and their indices. A
// changed partition starts moving (a copy in flight towards a target) or, when it was moving,
// may settle on its target; now and then a node joins, drains or leaves the table.
func mutate(rng *rand.Rand, m *state.Map, k int) (*state.Map, []int) {
	next := *m
	next.Epoch++
	next.Partitions = slices.Clone(m.Partitions)
	var changed []int
	for _, p := range rng.Perm(len(m.Partitions))[:k] {
		a, b := rng.IntN(6), rng.IntN(5)
		if b >= a {
			b++
		}
		old := m.Partitions[p]
		switch {
		case old.Target != nil && rng.IntN(2) == 0:
			next.Partitions[p] = state.Entry{Holders: old.Target, PrimaryEpoch: old.PrimaryEpoch}
		case rng.IntN(3) == 0:
			joining := fmt.Sprintf("n%d", (a+2)%6)
			next.Partitions[p] = state.Entry{Holders: []string{fmt.Sprintf("n%d", a), fmt.Sprintf("n%d", b)}, PrimaryEpoch: next.Epoch,
				Pending: []state.Pending{{Node: joining, Since: next.Epoch, Started: time.UnixMilli(int64(next.Epoch) * 1000).UTC(), Attempt: 1 + rng.IntN(2)}},
				Target:  []string{fmt.Sprintf("n%d", a), joining}}
		default:
			next.Partitions[p] = state.Entry{Holders: []string{fmt.Sprintf("n%d", a), fmt.Sprintf("n%d", b)}, PrimaryEpoch: next.Epoch}
		}
		if !next.Partitions[p].Equal(&m.Partitions[p]) {
			changed = append(changed, p)
		}
	}
	slices.Sort(changed)
	if rng.IntN(4) == 0 {
		next.Nodes = maps.Clone(m.Nodes)
		id := fmt.Sprintf("x%d", rng.IntN(3))
		switch n, ok := next.Nodes[id]; {
		case !ok:
			next.Nodes[id] = state.Node{ID: id, IP: "127.0.0.1:2", StartedAt: time.UnixMilli(int64(next.Epoch)).UTC()}
		case n.State == "":
			n.State = state.NodeDraining
			next.Nodes[id] = n
		default:
			delete(next.Nodes, id)
		}
	}
	return &next, changed
}

func same(t *testing.T, what string, got, want *state.Map) {
	t.Helper()
	if got.Epoch != want.Epoch || !got.SamePlacement(want) {
		t.Fatalf("%s: epoch %d differs from the map written (epoch %d)", what, got.Epoch, want.Epoch)
	}
}

// Over many epochs of small and large changes, a whole read and a read against the map before
// both give exactly the map written; the incremental read names exactly the partitions that
// changed; checkpoints roll over and leave no older chunk or delta behind; and a small change
// writes a small fraction of the map.
func TestStoredMapFollowsChanges(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := context.Background()
	const partitions = 600
	st := &store{t: t, c: srv.Client, s: keys.New("t"), maxValue: 1200}
	rng := rand.New(rand.NewPCG(1, 2))
	m := testMap(partitions)
	first := st.publish(m)
	if !first.Checkpoint() || m.Chunks < 5 {
		t.Fatalf("the first map: checkpoint %v in %d chunks", first.Checkpoint(), m.Chunks)
	}
	full := st.written
	held := m // what an incremental reader holds
	checkpoints, tables, smallest := 0, 0, 1.0
	for range 60 {
		k := 1 + rng.IntN(6)
		if rng.IntN(8) == 0 {
			k = 200 + rng.IntN(400)
		}
		next, changed := mutate(rng, st.cur, k)
		enc := st.publish(next)
		if enc.Checkpoint() {
			checkpoints++
		} else if k < 7 && enc.Nodes == nil {
			smallest = min(smallest, float64(st.written)/float64(full))
			if frac := float64(st.written) / float64(full); frac > 0.1 {
				t.Fatalf("%d partitions changed: %d bytes written, %.0f%% of the whole map", k, st.written, 100*frac)
			}
		}
		r, err := mapstore.ReadMap(ctx, srv.Client, st.s, 0)
		if err != nil {
			t.Fatal(err)
		}
		same(t, "whole read", r.Map, next)

		resp, err := srv.Client.Get(ctx, st.s.Partitions())
		if err != nil {
			t.Fatal(err)
		}
		h, err := state.DecodeHead(resp.Kvs[0].Value)
		if err != nil {
			t.Fatal(err)
		}
		got, err := mapstore.ReadNext(ctx, srv.Client, st.s, h, resp.Header.Revision, held)
		if err != nil {
			t.Fatal(err)
		}
		same(t, "incremental read", h, next)
		if enc.Checkpoint() {
			if got != nil {
				t.Fatalf("a read across a new checkpoint names changes %v", got)
			}
		} else if !slices.Equal(got, changed) {
			t.Fatalf("changed %v, want %v", got, changed)
		}
		held = h

		// Nothing older than the checkpoint stays in etcd, and no node table but the one the
		// head builds on.
		all, err := srv.Client.Get(ctx, st.s.AllChunksPrefix(), clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range all.Kvs {
			if k, ok := st.s.ParseMapKey(string(kv.Key)); !ok || k.Epoch < next.Checkpoint || k.Nodes && k.Epoch != next.NodesBase {
				t.Fatalf("key %s left behind (checkpoint %d, node table %d)", kv.Key, next.Checkpoint, next.NodesBase)
			}
		}
		if !enc.Checkpoint() && enc.Nodes != nil {
			tables++
		}
	}
	if checkpoints == 0 || checkpoints > 20 {
		t.Fatalf("%d checkpoints in 60 epochs", checkpoints)
	}
	if tables == 0 {
		t.Fatalf("no node table was written between checkpoints")
	}
	t.Logf("%d checkpoints; a change of a few partitions wrote at least %.1f%% of the whole map", checkpoints, 100*smallest)
}

// A reader never assembles a map with a part missing: a lost delta or chunk is ErrCorrupt.
func TestStoredMapMissingPartsAreCorrupt(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := context.Background()
	st := &store{t: t, c: srv.Client, s: keys.New("t"), maxValue: 1200}
	rng := rand.New(rand.NewPCG(3, 4))
	st.publish(testMap(600))
	base := st.cur
	for range 3 {
		next, _ := mutate(rng, st.cur, 3)
		st.publish(next)
	}
	if _, err := srv.Client.Delete(ctx, st.s.Delta(base.Epoch+2, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := mapstore.ReadMap(ctx, srv.Client, st.s, 0); !errors.Is(err, state.ErrCorrupt) {
		t.Fatalf("a map with a delta missing read: %v", err)
	}
	resp, err := srv.Client.Get(ctx, st.s.Partitions())
	if err != nil {
		t.Fatal(err)
	}
	h, _ := state.DecodeHead(resp.Kvs[0].Value)
	if _, err := mapstore.ReadNext(ctx, srv.Client, st.s, h, resp.Header.Revision, base); !errors.Is(err, state.ErrCorrupt) {
		t.Fatalf("an incremental read with a delta missing: %v", err)
	}
	if _, err := srv.Client.Delete(ctx, st.s.Chunk(base.Epoch, 1)); err != nil {
		t.Fatal(err)
	}
	h, _ = state.DecodeHead(resp.Kvs[0].Value)
	if _, err := mapstore.ReadNext(ctx, srv.Client, st.s, h, 0, nil); !errors.Is(err, state.ErrCorrupt) {
		t.Fatalf("a map with a chunk missing read: %v", err)
	}
}

// What a failed attempt at an epoch left (pieces of another delta of that epoch, written before
// the head's transaction failed) is never read with the map finally published at that epoch.
func TestStoredMapIgnoresAFailedAttempt(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := context.Background()
	st := &store{t: t, c: srv.Client, s: keys.New("t"), maxValue: 1200}
	rng := rand.New(rand.NewPCG(5, 6))
	st.publish(testMap(600))
	next, _ := mutate(rng, st.cur, 2)
	for i := range 3 {
		if _, err := srv.Client.Put(ctx, st.s.Delta(next.Epoch, i), `{"epoch":2,"piece":0,"pieces":3,"partitions":[0],"entries":[{"holders":["n9"],"primary_epoch":1}]}`); err != nil {
			t.Fatal(err)
		}
	}
	st.publish(next)
	r, err := mapstore.ReadMap(ctx, srv.Client, st.s, 0)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "after a failed attempt", r.Map, next)
}

// A reader whose map does not carry the node table the head builds on (one it did not read from
// etcd) reads that table too, at the head's revision, even when it lies before the deltas it
// reads; without the table the map is corrupt.
func TestStoredMapReadsTheNodeTableItLacks(t *testing.T) {
	srv := etcdtest.Start(t)
	ctx := context.Background()
	st := &store{t: t, c: srv.Client, s: keys.New("t"), maxValue: 1200}
	st.publish(testMap(600))
	var held *state.Map
	for i := range 2 {
		next := *st.cur
		next.Epoch++
		next.Partitions = slices.Clone(st.cur.Partitions)
		next.Partitions[i] = state.Entry{Holders: []string{"n5", "n4"}, PrimaryEpoch: next.Epoch}
		if enc := st.publish(&next); enc.Checkpoint() || enc.Nodes != nil {
			t.Fatalf("epoch %d: a checkpoint %v or a node table %v", next.Epoch, enc.Checkpoint(), enc.Nodes != nil)
		}
		if held == nil {
			// The map of epoch 2 as a reader holds it without having read it from etcd.
			held = &state.Map{Epoch: next.Epoch, Leader: next.Leader, Nodes: next.Nodes, Partitions: next.Partitions}
		}
	}
	resp, err := srv.Client.Get(ctx, st.s.Partitions())
	if err != nil {
		t.Fatal(err)
	}
	h, err := state.DecodeHead(resp.Kvs[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	if r := state.NextReads(st.s, h, held); r.Table != st.s.NodeTable(1) {
		t.Fatalf("reads %+v, want the node table of epoch 1 apart", r)
	}
	changed, err := mapstore.ReadNext(ctx, srv.Client, st.s, h, resp.Header.Revision, held)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "read with the node table apart", h, st.cur)
	if !slices.Equal(changed, []int{1}) {
		t.Fatalf("changed %v, want [1]", changed)
	}

	if _, err := srv.Client.Delete(ctx, st.s.NodeTable(1)); err != nil {
		t.Fatal(err)
	}
	h, _ = state.DecodeHead(resp.Kvs[0].Value)
	if _, err := mapstore.ReadNext(ctx, srv.Client, st.s, h, 0, held); !errors.Is(err, state.ErrCorrupt) {
		t.Fatalf("a map with its node table missing read: %v", err)
	}
}
