package clustertest

import (
	"slices"
	"strings"
	"testing"

	"github.com/clusterkit-go/clusterkit/internal/state"
)

func mapOf(epoch uint64, nodes []string, entries ...state.Entry) *state.Map {
	m := &state.Map{Epoch: epoch, Nodes: map[string]state.Node{}}
	for _, n := range nodes {
		m.Nodes[n] = state.Node{ID: n}
	}
	m.Partitions = entries
	return m
}

func TestInvariants(t *testing.T) {
	abc := []string{"a", "b", "c"}
	tests := []struct {
		name string
		maps []*state.Map
		// acked answers the acknowledgement look-ups; nil means every copy was acknowledged.
		acked acked
		want  string // a part of a violation that must be reported, "" for none at all
	}{
		{"a handoff and a crash keep every invariant", []*state.Map{
			mapOf(1, []string{"a", "b"}, state.Entry{Holders: []string{"a", "b"}, PrimaryEpoch: 1}),
			mapOf(2, abc, state.Entry{Holders: []string{"a", "b"}, PrimaryEpoch: 1, Pending: []state.Pending{{Node: "c", Since: 2}}}),
			mapOf(3, abc, state.Entry{Holders: []string{"c", "a", "b"}, PrimaryEpoch: 3}),
			mapOf(4, []string{"a", "b"}, state.Entry{Holders: []string{"a", "b"}, PrimaryEpoch: 4}),
		}, nil, ""},
		{"two primaries at one primary epoch", []*state.Map{
			mapOf(1, abc, state.Entry{Holders: []string{"a", "b", "c"}, PrimaryEpoch: 1}),
			mapOf(2, abc, state.Entry{Holders: []string{"b", "a", "c"}, PrimaryEpoch: 1}),
		}, nil, "primaries a and b at primary epoch 1"},
		{"an epoch going back", []*state.Map{
			mapOf(5, abc, state.Entry{Holders: []string{"a", "b", "c"}, PrimaryEpoch: 5}),
			mapOf(4, abc, state.Entry{Holders: []string{"a", "b", "c"}, PrimaryEpoch: 5}),
		}, nil, "epoch 4 published after epoch 5"},
		{"a primary epoch going back", []*state.Map{
			mapOf(5, abc, state.Entry{Holders: []string{"a", "b", "c"}, PrimaryEpoch: 5}),
			mapOf(6, abc, state.Entry{Holders: []string{"c", "b", "a"}, PrimaryEpoch: 2}),
		}, nil, "primary epoch went back from 5 to 2"},
		{"too few copies", []*state.Map{
			mapOf(1, abc, state.Entry{Holders: []string{"a", "b"}, PrimaryEpoch: 1}),
		}, nil, "fewer than 3"},
		{"routed to while copying", []*state.Map{
			mapOf(1, abc, state.Entry{Holders: []string{"a", "b", "c"}, PrimaryEpoch: 1, Pending: []state.Pending{{Node: "c", Since: 1}}}),
		}, nil, "routes to c while it still copies"},
		{"routed to without being asked to copy", []*state.Map{
			mapOf(1, abc, state.Entry{Holders: []string{"a", "b"}, PrimaryEpoch: 1}),
			mapOf(2, abc, state.Entry{Holders: []string{"a", "b", "c"}, PrimaryEpoch: 1}),
		}, nil, "never asked to copy it"},
		{"routed to before the acknowledgement", []*state.Map{
			mapOf(1, abc, state.Entry{Holders: []string{"a", "b"}, PrimaryEpoch: 1, Pending: []state.Pending{{Node: "c", Since: 1}}}),
			mapOf(2, abc, state.Entry{Holders: []string{"a", "b", "c"}, PrimaryEpoch: 1}),
		}, func(int, string, uint64) bool { return false }, "before it acknowledged"},
		{"no holder left to copy from: the new holders serve at once", []*state.Map{
			mapOf(1, []string{"a"}, state.Entry{Holders: []string{"a"}, PrimaryEpoch: 1}),
			mapOf(2, []string{"b", "c"}, state.Entry{Holders: []string{"b", "c"}, PrimaryEpoch: 2}),
		}, func(int, string, uint64) bool { return false }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := newInvariants(3)
			var bad []string
			for _, m := range tt.maps {
				bad = append(bad, inv.next(m, tt.acked)...)
			}
			if tt.want == "" {
				if len(bad) > 0 {
					t.Fatalf("violations %q", bad)
				}
				return
			}
			if !slices.ContainsFunc(bad, func(b string) bool { return strings.Contains(b, tt.want) }) {
				t.Fatalf("violations %q, want one with %q", bad, tt.want)
			}
		})
	}
}
