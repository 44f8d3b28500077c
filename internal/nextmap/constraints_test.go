package nextmap

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/state"
)

// settledWith runs maps from cur, every copy acknowledged, until the placement holds still.
func settledWith(t *testing.T, cur *state.Map, c Constraints, ids ...string) *state.Map {
	t.Helper()
	for range 20 {
		in := Input{Current: cur, Nodes: nodes(ids...), Leader: ids[0], PartitionCount: 64, ReplicationFactor: 2,
			HandoffTimeout: time.Minute, Now: t0.Add(time.Duration(cur.Epoch) * time.Second), Admin: c, Acks: map[Ack]uint64{}}
		for i, e := range cur.Partitions {
			for _, pd := range e.Pending {
				in.Acks[Ack{i, pd.Node}] = pd.Since
			}
		}
		r, err := Next(in)
		if err != nil {
			t.Fatal(err)
		}
		if r.Map.SamePlacement(cur) {
			return cur
		}
		cur = r.Map
	}
	t.Fatal("no settled map after 20 maps")
	return nil
}

func holding(m *state.Map, n string) int {
	k := 0
	for _, e := range m.Partitions {
		if slices.Contains(e.Holders, n) {
			k++
		}
	}
	return k
}

func TestConstraints(t *testing.T) {
	first := func(t *testing.T) *state.Map {
		r, err := Next(Input{Nodes: nodes("a", "b", "c"), Leader: "a", PartitionCount: 64, ReplicationFactor: 2, Now: t0})
		if err != nil {
			t.Fatal(err)
		}
		return r.Map
	}
	part := 5
	tests := []struct {
		name  string
		c     Constraints
		ids   []string
		check func(t *testing.T, before, after *state.Map)
	}{
		{"drain empties the node", Constraints{Drained: map[string]bool{"c": true}}, []string{"a", "b", "c"},
			func(t *testing.T, before, after *state.Map) {
				if holding(after, "c") != 0 || holding(before, "c") == 0 {
					t.Fatalf("c holds %d partitions after its drain (%d before)", holding(after, "c"), holding(before, "c"))
				}
			}},
		{"a cordoned node gets nothing of a drain", Constraints{Cordoned: map[string]bool{"c": true}, Drained: map[string]bool{"b": true}}, []string{"a", "b", "c", "d"},
			func(t *testing.T, before, after *state.Map) {
				for i, e := range after.Partitions {
					if slices.Contains(e.Holders, "c") && !slices.Contains(before.Partitions[i].Holders, "c") {
						t.Fatalf("partition %d moved onto cordoned c: %v before, %v after", i, before.Partitions[i].Holders, e.Holders)
					}
				}
				if holding(after, "b") != 0 {
					t.Fatalf("drained b holds %d", holding(after, "b"))
				}
			}},
		{"maintenance holds a join back", Constraints{Maintenance: []string{"upgrade"}}, []string{"a", "b", "c", "d"},
			func(t *testing.T, before, after *state.Map) {
				if holding(after, "d") != 0 {
					t.Fatalf("d got %d partitions during maintenance", holding(after, "d"))
				}
			}},
		{"maintenance repairs a lost holder", Constraints{Maintenance: []string{"upgrade"}}, []string{"a", "b"},
			func(t *testing.T, before, after *state.Map) {
				for i, e := range after.Partitions {
					if len(e.Holders) != 2 || slices.Contains(e.Holders, "c") {
						t.Fatalf("partition %d has holders %v after c crashed", i, e.Holders)
					}
					if !slices.Contains(before.Partitions[i].Holders, "c") && !slices.Equal(e.Holders, before.Partitions[i].Holders) {
						t.Fatalf("partition %d, which lost nothing, moved from %v to %v", i, before.Partitions[i].Holders, e.Holders)
					}
				}
			}},
		{"a pin moves the partition", Constraints{Pins: map[int]string{part: "c"}}, []string{"a", "b", "c"},
			func(t *testing.T, before, after *state.Map) {
				if !slices.Contains(after.Partitions[part].Holders, "c") {
					t.Fatalf("partition %d has holders %v, pinned to c", part, after.Partitions[part].Holders)
				}
			}},
		{"a weight takes a share", Constraints{Weights: map[string]int{"c": 2}}, []string{"a", "b", "c"},
			func(t *testing.T, before, after *state.Map) {
				if holding(after, "c") != 64 || holding(after, "a")+holding(after, "b") != 64 {
					t.Fatalf("weight 2 of 4: c holds %d of 128 replicas, a %d, b %d", holding(after, "c"), holding(after, "a"), holding(after, "b"))
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := first(t)
			if tt.c.Pins != nil && slices.Contains(before.Partitions[part].Holders, "c") {
				part = slices.IndexFunc(before.Partitions, func(e state.Entry) bool { return !slices.Contains(e.Holders, "c") })
				tt.c.Pins = map[int]string{part: "c"}
			}
			after := settledWith(t, before, tt.c, tt.ids...)
			if err := after.Validate(64); err != nil {
				t.Fatal(err)
			}
			tt.check(t, before, after)
		})
	}
}

// Actions read from records make the same constraints.
func TestConstraintsOf(t *testing.T) {
	p := 3
	c := ConstraintsOf([]state.AdminAction{
		{Kind: state.AdminDrain, Node: "a"}, {Kind: state.AdminCordon, Node: "b"}, {Kind: state.AdminMaintenance, Reason: "y"},
		{Kind: state.AdminMaintenance, Reason: "x"}, {Kind: state.AdminMove, Node: "c", Partition: &p}, {Kind: state.AdminWeight, Node: "d", Weight: 5},
	})
	if !c.Drained["a"] || !c.Cordoned["b"] || !slices.Equal(c.Maintenance, []string{"x", "y"}) || c.Pins[3] != "c" || c.Weights["d"] != 5 {
		t.Fatalf("%+v", c)
	}
}

// explained runs Explain on partition p and checks that it aims the partition where Next does:
// the notes describe the leader's own decision.
func explained(t *testing.T, in Input, p int) Explanation {
	t.Helper()
	ex, err := Explain(in, p)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Next(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Map.Partitions[p].Placement(); !slices.Equal(got, ex.Target) {
		t.Fatalf("partition %d: Explain aims it at %v, Next at %v", p, ex.Target, got)
	}
	return ex
}

// noteOf returns the first note of the constraint kind, failing the test without one.
func noteOf(t *testing.T, ex Explanation, constraint string) Note {
	t.Helper()
	for _, n := range ex.Notes {
		if n.Constraint == constraint {
			if n.Why == "" {
				t.Fatalf("note %+v says no why", n)
			}
			return n
		}
	}
	t.Fatalf("partition %d: no %s note among %+v", ex.Partition, constraint, ex.Notes)
	return Note{}
}

// A pin puts its node among the partition's holders, and Explain says so.
func TestExplainPinPlaced(t *testing.T) {
	cur := settled(t, "a", "b", "c")
	p := slices.IndexFunc(cur.Partitions, func(e state.Entry) bool { return !slices.Contains(e.Holders, "c") })
	in := input(cur, nodes("a", "b", "c"))
	in.Admin = Constraints{Pins: map[int]string{p: "c"}}
	ex := explained(t, in, p)
	if n := noteOf(t, ex, state.AdminMove); n.Effect != "placed" || n.Node != "c" || n.Blocked != "" || !slices.Contains(ex.Target, "c") {
		t.Fatalf("pin to c: %+v, target %v", n, ex.Target)
	}
	if slices.Contains(ex.Holders, "c") {
		t.Fatalf("the placement alone puts partition %d on %v: the pin decided nothing", p, ex.Holders)
	}
}

// A pin its node may not take waits, and Explain says why.
func TestExplainPinBlocked(t *testing.T) {
	zoned := func(ids ...string) map[string]state.Node {
		ns := nodes(ids...)
		for i, id := range ids {
			n := ns[id]
			n.Zone = []string{"z1", "z2"}[i%2]
			ns[id] = n
		}
		return ns
	}
	tests := []struct {
		name    string
		nodes   map[string]state.Node
		c       Constraints
		blocked string
	}{
		{"not live", nodes("a", "b", "c"), Constraints{}, "not-live"},
		{"draining", with(nodes("a", "b", "c", "d"), "d", state.NodeDraining), Constraints{}, "draining"},
		{"drained", nodes("a", "b", "c", "d"), Constraints{Drained: map[string]bool{"d": true}}, "drained"},
		{"cordoned", nodes("a", "b", "c", "d"), Constraints{Cordoned: map[string]bool{"d": true}}, "cordoned"},
		// a and c are in zone z1, b and d in z2: with two zones and two holders, a partition has
		// one holder in each, and d in place of a last replica in z1 would put both in z2.
		{"spread", zoned("a", "b", "c", "d"), Constraints{}, "spread"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := input(nil, tt.nodes)
			in.Nodes = maps.Clone(tt.nodes)
			in.Admin = tt.c
			if tt.blocked != "not-live" {
				delete(in.Nodes, "d") // the first map, without d
				r, err := Next(in)
				if err != nil {
					t.Fatal(err)
				}
				in.Current, in.Nodes = r.Map, tt.nodes
			} else {
				r, err := Next(in)
				if err != nil {
					t.Fatal(err)
				}
				in.Current = r.Map
			}
			pinned := "d"
			if tt.blocked == "not-live" {
				pinned = "z"
			}
			p := slices.IndexFunc(in.Current.Partitions, func(e state.Entry) bool {
				return tt.blocked != "spread" || in.Nodes[e.Holders[len(e.Holders)-1]].Zone == "z1"
			})
			in.Admin.Pins = map[int]string{p: pinned}
			ex := explained(t, in, p)
			if n := noteOf(t, ex, state.AdminMove); n.Effect != "blocked" || n.Blocked != tt.blocked || n.Node != pinned || slices.Contains(ex.Target, pinned) {
				t.Fatalf("pin of partition %d (holders %v) to %s: %+v, target %v; want it blocked as %s",
					p, in.Current.Partitions[p].Holders, pinned, n, ex.Target, tt.blocked)
			}
		})
	}
}

// A join onto a cordoned node is undone: the node the placement would replace keeps its place.
func TestExplainCordonKeptAway(t *testing.T) {
	cur := settled(t, "a", "b", "c")
	in := input(cur, nodes("a", "b", "c", "d"))
	in.Admin = Constraints{Cordoned: map[string]bool{"d": true}}
	found := 0
	for p := range cur.Partitions {
		ex := explained(t, in, p)
		if !slices.Contains(ex.Holders, "d") {
			continue
		}
		found++
		if n := noteOf(t, ex, state.AdminCordon); n.Effect != "kept-away" || n.Node != "d" || slices.Contains(ex.Target, "d") {
			t.Fatalf("partition %d, placed on %v: %+v, target %v; want d kept away", p, ex.Holders, n, ex.Target)
		}
	}
	if found == 0 {
		t.Fatal("the placement moved nothing onto the joining d")
	}
}

// While maintenance stands, the placement's moves wait, and only a lost holder is replaced.
func TestExplainMaintenance(t *testing.T) {
	cur := settled(t, "a", "b", "c")
	in := input(cur, nodes("a", "b", "c", "d"))
	in.Admin = Constraints{Maintenance: []string{"kernel upgrade"}}
	effects := map[string]int{}
	for p := range cur.Partitions {
		ex := explained(t, in, p)
		n := noteOf(t, ex, state.AdminMaintenance)
		effects[n.Effect]++
		want := "standing"
		if !slices.Equal(ex.Holders, cur.Partitions[p].Holders) {
			want = "held-back"
		}
		if n.Effect != want || !slices.Equal(ex.Target, cur.Partitions[p].Holders) || !strings.Contains(n.Why, `"kernel upgrade"`) {
			t.Fatalf("partition %d on %v, placed on %v: %+v, target %v; want %s", p, cur.Partitions[p].Holders, ex.Holders, n, ex.Target, want)
		}
	}
	if effects["held-back"] == 0 {
		t.Fatalf("no move held back: %v", effects)
	}
	in.Nodes = nodes("a", "b") // c is gone
	p := slices.IndexFunc(cur.Partitions, func(e state.Entry) bool { return slices.Contains(e.Holders, "c") })
	ex := explained(t, in, p)
	if n := noteOf(t, ex, state.AdminMaintenance); n.Effect != "repair" || slices.Contains(ex.Target, "c") {
		t.Fatalf("partition %d, which lost c: %+v, target %v; want it repaired", p, n, ex.Target)
	}
}

// A drain moves the partitions off its node; with every node drained, they keep what they have.
func TestExplainDrain(t *testing.T) {
	cur := settled(t, "a", "b", "c")
	p := slices.IndexFunc(cur.Partitions, func(e state.Entry) bool { return slices.Contains(e.Holders, "c") })
	in := input(cur, nodes("a", "b", "c"))
	in.Admin = Constraints{Drained: map[string]bool{"c": true}}
	ex := explained(t, in, p)
	if n := noteOf(t, ex, state.AdminDrain); n.Effect != "emptying" || n.Node != "c" || slices.Contains(ex.Target, "c") {
		t.Fatalf("partition %d on %v: %+v, target %v; want c emptied", p, cur.Partitions[p].Holders, n, ex.Target)
	}
	q := slices.IndexFunc(cur.Partitions, func(e state.Entry) bool { return !slices.Contains(e.Holders, "c") })
	if ex := explained(t, in, q); len(ex.Notes) != 0 {
		t.Fatalf("partition %d, not on c: notes %+v", q, ex.Notes)
	}
	in.Admin.Drained = map[string]bool{"a": true, "b": true, "c": true}
	ex = explained(t, in, p)
	if n := noteOf(t, ex, state.AdminDrain); n.Effect != "gave-way" || !slices.Contains(ex.Target, "c") {
		t.Fatalf("every node drained: %+v, target %v; want c to keep partition %d", n, ex.Target, p)
	}
}
