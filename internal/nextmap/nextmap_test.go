package nextmap

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/state"
	"github.com/clusterkit-go/clusterkit/pkg/rebalance"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func nodes(ids ...string) map[string]state.Node {
	out := map[string]state.Node{}
	for _, id := range ids {
		out[id] = state.Node{ID: id, IP: "127.0.0.1:1"}
	}
	return out
}

func with(ns map[string]state.Node, id, st string) map[string]state.Node {
	n := ns[id]
	n.State = st
	ns[id] = n
	return ns
}

// settled returns the map of a cluster of ids that has no handoff in flight.
func settled(t *testing.T, ids ...string) *state.Map {
	t.Helper()
	r, err := Next(Input{Nodes: nodes(ids...), Leader: ids[0], PartitionCount: 8, ReplicationFactor: 2, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	return r.Map
}

// joining returns the map in which c, joining a and b, copies its partitions in.
func joining(t *testing.T) *state.Map {
	t.Helper()
	r, err := Next(input(settled(t, "a", "b"), nodes("a", "b", "c")))
	if err != nil {
		t.Fatal(err)
	}
	return r.Map
}

// acked is the input after m in which every copy m asks for is acknowledged, naming the epoch
// of its request less older (0: the request itself).
func acked(m *state.Map, older uint64) Input {
	acks := map[Ack]uint64{}
	for i, e := range m.Partitions {
		for _, pd := range e.Pending {
			acks[Ack{i, pd.Node}] = pd.Since - older
		}
	}
	in := input(m, nodes("a", "b", "c"))
	in.Acks = acks
	return in
}

func input(cur *state.Map, ns map[string]state.Node) Input {
	return Input{Current: cur, Nodes: ns, Leader: "a", PartitionCount: 8, ReplicationFactor: 2,
		HandoffTimeout: time.Minute, Now: t0.Add(time.Second)}
}

func TestNext(t *testing.T) {
	tests := []struct {
		name string
		in   func(t *testing.T) Input
		// check inspects the result; cur is in.Current.
		check func(t *testing.T, cur *state.Map, r Result)
	}{
		{
			name: "new cluster places every partition at once",
			in: func(t *testing.T) Input {
				return input(nil, nodes("a", "b", "c"))
			},
			check: func(t *testing.T, _ *state.Map, r Result) {
				m := r.Map
				if m.Epoch != 1 || m.Cause.Reason != state.ReasonCreate || Pending(m) != 0 || len(m.Partitions) != 8 {
					t.Fatalf("epoch %d cause %v pending %d partitions %d", m.Epoch, m.Cause, Pending(m), len(m.Partitions))
				}
				for i, e := range m.Partitions {
					if len(e.Holders) != 2 || e.PrimaryEpoch != 1 {
						t.Errorf("partition-%d: %+v", i, e)
					}
				}
			},
		},
		{
			name: "no live node keeps the last map",
			in: func(t *testing.T) Input {
				return input(settled(t, "a", "b"), with(nodes("a"), "a", state.NodeLeaving))
			},
			check: func(t *testing.T, _ *state.Map, r Result) {
				if r.Map != nil {
					t.Fatalf("got a map at epoch %d", r.Map.Epoch)
				}
			},
		},
		{
			name: "a joining node copies before it is routed to",
			in: func(t *testing.T) Input {
				return input(settled(t, "a", "b"), nodes("a", "b", "c"))
			},
			check: func(t *testing.T, cur *state.Map, r Result) {
				m := r.Map
				if m.Epoch != cur.Epoch+1 || m.Cause.Reason != state.ReasonJoin || !slices.Equal(m.Cause.Nodes, []string{"c"}) {
					t.Fatalf("epoch %d cause %+v", m.Epoch, m.Cause)
				}
				if Pending(m) == 0 {
					t.Fatal("nothing asked of c")
				}
				for i, e := range m.Partitions {
					if slices.Contains(e.Holders, "c") {
						t.Errorf("partition-%d routes to c before its copy: %v", i, e.Holders)
					}
					if !slices.Equal(e.Holders, cur.Partitions[i].Holders) || e.PrimaryEpoch != cur.Partitions[i].PrimaryEpoch {
						t.Errorf("partition-%d changed holders during the copy: %v -> %v", i, cur.Partitions[i].Holders, e.Holders)
					}
					for _, pd := range e.Pending {
						if pd.Node != "c" || pd.Since != m.Epoch || pd.Attempt != 1 || !pd.Started.Equal(t0.Add(time.Second)) {
							t.Errorf("partition-%d pending %+v", i, pd)
						}
					}
				}
			},
		},
		{
			name: "a joining node without a copy hook serves at once; one with a hook still copies",
			in: func(t *testing.T) Input {
				ns := nodes("a", "b", "c", "d")
				c := ns["c"]
				c.NoHandoff = true
				ns["c"] = c
				return input(settled(t, "a", "b"), ns)
			},
			check: func(t *testing.T, cur *state.Map, r Result) {
				m := r.Map
				if m.Cause.Reason != state.ReasonJoin {
					t.Fatalf("cause %+v", m.Cause)
				}
				onC, onD := 0, 0
				for i, e := range m.Partitions {
					if slices.Contains(e.Holders, "c") {
						onC++
						if e.Holders[0] == "c" && e.PrimaryEpoch != m.Epoch {
							t.Errorf("partition-%d: c became primary at primary epoch %d", i, e.PrimaryEpoch)
						}
					}
					for _, pd := range e.Pending {
						if pd.Node != "d" {
							t.Errorf("partition-%d asks %s to copy", i, pd.Node)
						}
						onD++
					}
					if slices.Contains(e.Holders, "d") {
						t.Errorf("partition-%d routes to d before its copy: %v", i, e.Holders)
					}
				}
				if onC == 0 || onD == 0 {
					t.Fatalf("c holds %d partitions, d copies %d: want both", onC, onD)
				}
			},
		},
		{
			name: "an acknowledged copy completes the handoff",
			in: func(t *testing.T) Input {
				return acked(joining(t), 0)
			},
			check: func(t *testing.T, cur *state.Map, r Result) {
				m := r.Map
				if m.Cause.Reason != state.ReasonHandoff || Pending(m) != 0 {
					t.Fatalf("cause %+v pending %d", m.Cause, Pending(m))
				}
				gained := 0
				for i, e := range m.Partitions {
					if e.Target != nil || len(e.Holders) != 2 {
						t.Errorf("partition-%d: %+v", i, e)
					}
					if len(cur.Partitions[i].Pending) > 0 {
						if !slices.Contains(e.Holders, "c") {
							t.Errorf("partition-%d: acknowledged c is not a holder: %v", i, e.Holders)
						}
						gained++
					}
				}
				if gained == 0 {
					t.Fatal("no partition moved")
				}
			},
		},
		{
			name: "a copy acknowledged for an older request does not count",
			in: func(t *testing.T) Input {
				return acked(joining(t), 1)
			},
			check: func(t *testing.T, cur *state.Map, r Result) {
				if !r.Map.SamePlacement(cur) {
					t.Fatalf("the map changed on stale acknowledgements: cause %+v", r.Map.Cause)
				}
			},
		},
		{
			name: "a crashed primary is replaced by a surviving holder at once",
			in: func(t *testing.T) Input {
				return input(settled(t, "a", "b", "c"), nodes("a", "b"))
			},
			check: func(t *testing.T, cur *state.Map, r Result) {
				m := r.Map
				if m.Cause.Reason != state.ReasonCrash || !slices.Equal(m.Cause.Nodes, []string{"c"}) {
					t.Fatalf("cause %+v", m.Cause)
				}
				for i, e := range m.Partitions {
					if slices.Contains(e.Holders, "c") {
						t.Errorf("partition-%d still lists c: %v", i, e.Holders)
					}
					was := cur.Partitions[i].Holders
					switch {
					case was[0] == "c" && e.PrimaryEpoch != m.Epoch:
						t.Errorf("partition-%d: new primary %s keeps primary epoch %d", i, e.Holders[0], e.PrimaryEpoch)
					case was[0] != "c" && (e.Holders[0] != was[0] || e.PrimaryEpoch != cur.Partitions[i].PrimaryEpoch):
						t.Errorf("partition-%d: primary %s@%d became %s@%d", i, was[0], cur.Partitions[i].PrimaryEpoch, e.Holders[0], e.PrimaryEpoch)
					}
				}
			},
		},
		{
			name: "a node that said leaving is a leave, not a crash",
			in: func(t *testing.T) Input {
				in := input(settled(t, "a", "b", "c"), nodes("a", "b"))
				in.Departed = map[string]bool{"c": true}
				return in
			},
			check: func(t *testing.T, _ *state.Map, r Result) {
				if r.Map.Cause.Reason != state.ReasonLeave || !slices.Equal(r.Map.Cause.Nodes, []string{"c"}) {
					t.Fatalf("cause %+v", r.Map.Cause)
				}
			},
		},
		{
			name: "a leaving leader leaves itself out",
			in: func(t *testing.T) Input {
				in := input(settled(t, "a", "b", "c"), nodes("a", "b", "c"))
				in.Leaving = true
				return in
			},
			check: func(t *testing.T, _ *state.Map, r Result) {
				if _, ok := r.Map.Nodes["a"]; ok || r.Map.Cause.Reason != state.ReasonLeave {
					t.Fatalf("nodes %v cause %+v", r.Map.Nodes, r.Map.Cause)
				}
			},
		},
		{
			name: "a draining node is given nothing new and keeps serving until the copies are made",
			in: func(t *testing.T) Input {
				return input(settled(t, "a", "b", "c"), with(nodes("a", "b", "c"), "c", state.NodeDraining))
			},
			check: func(t *testing.T, cur *state.Map, r Result) {
				m := r.Map
				if m.Cause.Reason != state.ReasonDrain {
					t.Fatalf("cause %+v", m.Cause)
				}
				for i, e := range m.Partitions {
					if slices.Contains(e.Target, "c") {
						t.Errorf("partition-%d targets the draining node: %v", i, e.Target)
					}
					if slices.Contains(cur.Partitions[i].Holders, "c") && !slices.Contains(e.Holders, "c") {
						t.Errorf("partition-%d dropped c before its copy: %v", i, e.Holders)
					}
				}
			},
		},
		{
			name: "an overdue copy is asked again and reported",
			in: func(t *testing.T) Input {
				in := input(joining(t), nodes("a", "b", "c"))
				in.Now = t0.Add(2 * time.Minute)
				return in
			},
			check: func(t *testing.T, cur *state.Map, r Result) {
				if len(r.Retries) != Pending(cur) || r.Map.Cause.Reason != state.ReasonTimeout {
					t.Fatalf("%d retries for %d pending, cause %+v", len(r.Retries), Pending(cur), r.Map.Cause)
				}
				for _, rt := range r.Retries {
					pd, _ := r.Map.Partitions[rt.Partition].PendingFor(rt.Node)
					if rt.Attempt != 1 || pd.Attempt != 2 || pd.Since != r.Map.Epoch {
						t.Errorf("retry %+v, pending %+v", rt, pd)
					}
				}
			},
		},
		{
			name: "a crashed node keeps its places during the grace period",
			in: func(t *testing.T) Input {
				in := input(settled(t, "a", "b", "c"), nodes("a", "b"))
				in.CrashGracePeriod = time.Minute
				return in
			},
			check: func(t *testing.T, _ *state.Map, r Result) {
				m := r.Map
				if a, ok := m.Absent["c"]; !ok || !a.Since.Equal(t0.Add(time.Second)) {
					t.Fatalf("absent %v", m.Absent)
				}
				if Pending(m) != 0 {
					t.Fatalf("%d copies asked during the grace period", Pending(m))
				}
				if w := Wake(m, time.Minute, time.Minute, t0.Add(time.Second)); w != time.Minute {
					t.Fatalf("wake in %v, want the end of the grace period", w)
				}
			},
		},
		{
			name: "an unreadable map is replaced by a fresh placement",
			in: func(t *testing.T) Input {
				cur := settled(t, "a", "b")
				cur.Partitions = cur.Partitions[:3]
				return input(cur, nodes("a", "b"))
			},
			check: func(t *testing.T, _ *state.Map, r Result) {
				if r.Map.Epoch != 1 || len(r.Map.Partitions) != 8 || r.Map.Cause.Reason != state.ReasonCreate {
					t.Fatalf("epoch %d, %d partitions, cause %+v", r.Map.Epoch, len(r.Map.Partitions), r.Map.Cause)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in(t)
			r, err := Next(in)
			if err != nil {
				t.Fatal(err)
			}
			if r.Map != nil {
				if err := r.Map.Validate(8); err != nil {
					t.Fatalf("invalid map: %v", err)
				}
			}
			tt.check(t, in.Current, r)
		})
	}
}

func TestWake(t *testing.T) {
	m := settled(t, "a", "b")
	if w := Wake(m, time.Minute, 0, t0); w != time.Hour {
		t.Fatalf("settled map wakes in %v", w)
	}
	m.Partitions[0].Pending = []state.Pending{{Node: "c", Since: 2, Started: t0, Attempt: 1}}
	if w := Wake(m, time.Minute, 0, t0.Add(20*time.Second)); w != 40*time.Second {
		t.Fatalf("wake in %v, want 40s", w)
	}
	if w := Wake(m, time.Minute, 0, t0.Add(2*time.Minute)); w != time.Millisecond {
		t.Fatalf("overdue wake in %v, want 1ms", w)
	}
}

func TestAllAcknowledged(t *testing.T) {
	m := settled(t, "a", "b")
	m.Partitions[1].Pending = []state.Pending{{Node: "c", Since: 5}}
	m.Partitions[2].Pending = []state.Pending{{Node: "c", Since: 6}, {Node: "d", Since: 6}}
	tests := []struct {
		name string
		acks map[Ack]uint64
		want bool
	}{
		{"every copy", map[Ack]uint64{{1, "c"}: 5, {2, "c"}: 6, {2, "d"}: 6}, true},
		{"and a stale one", map[Ack]uint64{{1, "c"}: 5, {2, "c"}: 6, {2, "d"}: 6, {3, "c"}: 2}, true},
		{"one missing", map[Ack]uint64{{1, "c"}: 5, {2, "c"}: 6}, false},
		{"one for an older request", map[Ack]uint64{{1, "c"}: 4, {2, "c"}: 6, {2, "d"}: 6}, false},
		{"none", nil, false},
	}
	for _, tt := range tests {
		if got := AllAcknowledged(m, tt.acks); got != tt.want {
			t.Errorf("%s: AllAcknowledged = %v, want %v", tt.name, got, tt.want)
		}
	}
	if AllAcknowledged(nil, nil) {
		t.Error("every copy of no map is acknowledged")
	}
}

// Explain explains the placement Next makes: its holders are the target Next gives the
// partition, whatever moved (a join, a crash kept in its grace period, a drain, a leave), with
// the places kept for absent nodes.
func TestExplainAgreesWithNext(t *testing.T) {
	grace := func(in Input) Input { in.CrashGracePeriod = time.Minute; return in }
	tests := []struct {
		name string
		in   func(t *testing.T) Input
	}{
		{"join", func(t *testing.T) Input { return input(settled(t, "a", "b"), nodes("a", "b", "c")) }},
		{"join in progress", func(t *testing.T) Input { return input(joining(t), nodes("a", "b", "c")) }},
		{"crash in the grace period", func(t *testing.T) Input { return grace(input(settled(t, "a", "b", "c"), nodes("a", "b"))) }},
		{"drain", func(t *testing.T) Input {
			return input(settled(t, "a", "b", "c"), with(nodes("a", "b", "c"), "c", state.NodeDraining))
		}},
		{"leave", func(t *testing.T) Input {
			in := input(settled(t, "a", "b", "c"), nodes("a", "b"))
			in.Departed = map[string]bool{"c": true}
			return in
		}},
		{"new cluster", func(t *testing.T) Input { return input(nil, nodes("a", "b", "c")) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in(t)
			r, err := Next(in)
			if err != nil {
				t.Fatal(err)
			}
			for p := range in.PartitionCount {
				ex, err := Explain(in, p)
				if err != nil {
					t.Fatalf("partition %d: %v", p, err)
				}
				// An absent node keeps its place in the target but is not routed to.
				got := slices.DeleteFunc(slices.Clone(ex.Holders), func(id string) bool { _, ok := r.Map.Absent[id]; return ok })
				if want := r.Map.Partitions[p].Placement(); !slices.Equal(got, want) {
					t.Errorf("partition %d: Explain places it on %v, Next on %v (absent %v)", p, ex.Holders, want, r.Map.Absent)
				}
			}
		})
	}
	if _, err := Explain(input(nil, nodes("a")), 8); !errors.Is(err, rebalance.ErrInvalidPartition) {
		t.Errorf("partition 8 of 8: %v, want ErrInvalidPartition", err)
	}
	if _, err := Explain(input(nil, nil), 0); !errors.Is(err, rebalance.ErrNoNodes) {
		t.Errorf("no node: %v, want ErrNoNodes", err)
	}
}
