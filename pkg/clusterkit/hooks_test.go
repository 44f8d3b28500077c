package clusterkit

import (
	"fmt"
	"slices"
	"testing"

	"github.com/clusterkit-go/clusterkit/internal/state"
)

func testMap(epoch uint64, nodes []string, parts ...[]string) *state.Map {
	m := &state.Map{Epoch: epoch, Nodes: map[string]state.Node{}}
	for _, h := range parts {
		m.Partitions = append(m.Partitions, state.Entry{Holders: h, PrimaryEpoch: epoch})
	}
	for _, n := range nodes {
		m.Nodes[n] = state.Node{ID: n, IP: "127.0.0.1:1"}
	}
	return m
}

func eventStrings(events []hookEvent) []string {
	var out []string
	for _, ev := range events {
		var from []string
		for _, n := range ev.from {
			from = append(from, n.ID)
		}
		out = append(out, fmt.Sprintf("%s->%s from %v", ev.id, ev.to.ID, from))
	}
	return out
}

// A map change turns into one hook event per (partition, new holder), with the previous holders
// that are still live as sources.
func TestDiffHolders(t *testing.T) {
	m1 := testMap(1, []string{"a", "b", "c"}, []string{"a", "b"}, []string{"b", "c"}, []string{"c", "a"})
	// d joins and takes a slot of partition 0; c dies: partition 1 promotes b's replica... and gets d,
	// partition 2 loses c and gets b.
	m2 := testMap(2, []string{"a", "b", "d"}, []string{"d", "b"}, []string{"b", "d"}, []string{"a", "b"})
	tests := []struct {
		name     string
		old, new *state.Map
		want     []string
	}{
		{"new cluster", nil, m1, []string{
			"partition-0->a from []", "partition-0->b from []",
			"partition-1->b from []", "partition-1->c from []",
			"partition-2->c from []", "partition-2->a from []",
		}},
		{"join and crash", m1, m2, []string{
			"partition-0->d from [a b]",
			"partition-1->d from [b]",
			"partition-2->b from [a]",
		}},
		{"no change", m1, m1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var old *snapshot
			if tt.old != nil {
				old = newSnapshot(tt.old, 1)
			}
			got := eventStrings(diffHolders(old, newSnapshot(tt.new, 2)))
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}
