package nextmap

import (
	"slices"
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
