package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/keys"
	"github.com/clusterkit-go/clusterkit/internal/nextmap"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func records(ids ...string) map[string]state.Node {
	out := map[string]state.Node{}
	for _, id := range ids {
		out[id] = state.Node{ID: id, IP: id + ":8080", Weight: 1}
	}
	return out
}

// joiningSnapshot is a cluster of a and b that c is joining (its copies pending, asked 3s
// ago), read at now.
func joiningSnapshot(t *testing.T) *snapshot {
	t.Helper()
	return throttledJoin(t, 0)
}

// throttledJoin is joiningSnapshot with the leader's MaxHandoffsPerNode at perNode (0: no bound).
func throttledJoin(t *testing.T, perNode int) *snapshot {
	t.Helper()
	in := nextmap.Input{Nodes: records("a", "b"), Leader: "a", PartitionCount: 8, ReplicationFactor: 2,
		HandoffTimeout: time.Minute, Now: t0, MaxHandoffsPerNode: perNode}
	r, err := nextmap.Next(in)
	if err != nil {
		t.Fatal(err)
	}
	in.Current, in.Nodes, in.Now = r.Map, records("a", "b", "c"), t0.Add(time.Second)
	if r, err = nextmap.Next(in); err != nil {
		t.Fatal(err)
	}
	return &snapshot{name: "default", config: &state.Config{PartitionCount: 8, ReplicationFactor: 2}, m: r.Map,
		records: records("a", "b", "c"), leader: "a", now: t0.Add(4 * time.Second)}
}

// Every node of the map, of its absent ones and of the records has one state.
func TestNodeStates(t *testing.T) {
	snap := joiningSnapshot(t)
	snap.m.Absent = map[string]state.Absent{"e": {Since: t0, Zone: "z", Weight: 2}}
	snap.records = records("a", "c", "d", "f")
	a, f := snap.records["a"], snap.records["f"]
	a.State, f.State = state.NodeDraining, state.NodeLeaving
	snap.records["a"], snap.records["f"] = a, f

	doc := snap.nodes()
	got := map[string]string{}
	pending := 0
	for _, n := range doc.Nodes {
		got[n.ID] = n.State
		pending += n.PendingIn
		if n.ID == "e" && (n.Zone != "z" || n.Weight != 2 || n.InMap || n.Lease) {
			t.Errorf("absent node %+v: want its zone and weight from the map, not in the map, no lease", n)
		}
	}
	want := map[string]string{"a": stateDraining, "b": stateLeaseGone, "c": stateServing, "d": stateNotInMap,
		"e": stateAbsent, "f": stateLeaving}
	for id, st := range want {
		if got[id] != st {
			t.Errorf("node %s: state %q, want %q", id, got[id], st)
		}
	}
	if len(got) != len(want) || pending != nextmap.Pending(snap.m) || pending == 0 {
		t.Errorf("nodes %v with %d copies pending in; want %v and the map's %d", got, pending, want, nextmap.Pending(snap.m))
	}
	if gone, absent := snap.leaseGone(), snap.absent(); !slices.Equal(gone, []string{"b"}) || !slices.Equal(absent, []string{"e"}) {
		t.Errorf("lease gone %v, absent %v; want [b] and [e]", gone, absent)
	}
}

// A join under MaxHandoffsPerNode 1: nodes lists the one copy into c in flight and the others
// the map holds back as queued, in the table and the JSON, and status counts them beside the
// copies in flight. In flight and queued, c is to copy in what it copies at once without a bound.
func TestQueuedCopies(t *testing.T) {
	want := nextmap.Pending(throttledJoin(t, 0).m)
	snap := throttledJoin(t, 1)
	var c nodeInfo
	for _, n := range snap.nodes().Nodes {
		if n.ID == "c" {
			c = n
		} else if n.Queued != 0 {
			t.Errorf("%s: %d copies queued, want none", n.ID, n.Queued)
		}
	}
	if c.PendingIn != 1 || c.Queued != want-1 || want < 2 {
		t.Fatalf("c: %d copies in flight, %d queued; want 1 and %d (without a bound, %d at once)", c.PendingIn, c.Queued, want-1, want)
	}
	var out strings.Builder
	nodesTable(&out, snap.nodes())
	if rows := tableRows(out.String(), "NODE"); len(rows) != 3 || !slices.Equal(rows[2][len(rows[2])-2:], []string{"1", fmt.Sprint(want - 1)}) {
		t.Errorf("nodes table rows %q: want c's pending in 1 and queued %d last", rows, want-1)
	}
	st := statusDocument(&session{schema: keys.New("default")}, snap)
	if st.PendingCopies != 1 || st.QueuedCopies != want-1 {
		t.Errorf("status: %d copies pending, %d queued; want 1 and %d", st.PendingCopies, st.QueuedCopies, want-1)
	}
	out.Reset()
	snap.statusTable(&out, st)
	if line := fmt.Sprintf("Pending copies:\t1, %d queued\n", want-1); !strings.Contains(out.String(), line) {
		t.Errorf("status table lacks %q:\n%s", line, out.String())
	}
}

// A partition that moves is explained with where it moves, since when, and the placement that
// the map aims at.
func TestExplainMovingPartition(t *testing.T) {
	snap := joiningSnapshot(t)
	p := slices.IndexFunc(snap.m.Partitions, func(e state.Entry) bool { return len(e.Pending) > 0 })
	if p < 0 {
		t.Fatal("no partition moves in the joining map")
	}
	e := snap.m.Partitions[p]
	doc, err := snap.explain(snap.m, p)
	if err != nil {
		t.Fatal(err)
	}
	if !doc.Moving || !slices.Equal(doc.To, []string{"c"}) || !slices.Equal(doc.Target, e.Target) || len(doc.Pending) != 1 {
		t.Fatalf("explain: %+v; want c copying in towards %v", doc, e.Target)
	}
	if pd := doc.Pending[0]; pd.Since != snap.m.Epoch || pd.MapsSince != 0 || pd.Age != "3s" || pd.Attempt != 1 {
		t.Errorf("pending %+v: want asked by this map, 3s ago, first attempt", pd)
	}
	if !doc.Placement.SameAsMap || !slices.Equal(doc.Placement.Holders, e.Target) {
		t.Errorf("placement %+v: want the map's target %v", doc.Placement, e.Target)
	}
	var out strings.Builder
	explainTable(&out, doc)
	for _, want := range []string{"Moving:", "to c (target " + strings.Join(e.Target, ","), "Pending:", "c, asked by the map of epoch 2 (0 maps since), 3s ago, attempt 1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("explain table lacks %q:\n%s", want, out.String())
		}
	}

	// Once c's lease is gone, the placement leaves it out: the map still aims at it.
	delete(snap.records, "c")
	if doc, err = snap.explain(snap.m, p); err != nil {
		t.Fatal(err)
	}
	if doc.Placement.SameAsMap || slices.Contains(doc.Placement.Holders, "c") {
		t.Errorf("placement without c's lease: %+v; want it elsewhere than the map's target %v", doc.Placement, e.Target)
	}
}
