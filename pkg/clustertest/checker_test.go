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
		want string // a part of a violation that must be reported, "" for none at all
	}{
		{"a handoff and a crash keep every invariant", []*state.Map{
			mapOf(1, []string{"a", "b"}, state.Entry{Holders: []string{"a", "b"}, PrimaryEpoch: 1}),
			mapOf(2, abc, state.Entry{Holders: []string{"a", "b"}, PrimaryEpoch: 1, Pending: []state.Pending{{Node: "c", Since: 2}}}),
			mapOf(3, abc, state.Entry{Holders: []string{"c", "a", "b"}, PrimaryEpoch: 3}),
			mapOf(4, []string{"a", "b"}, state.Entry{Holders: []string{"a", "b"}, PrimaryEpoch: 4}),
		}, ""},
		{"two primaries at one primary epoch", []*state.Map{
			mapOf(1, abc, state.Entry{Holders: []string{"a", "b", "c"}, PrimaryEpoch: 1}),
			mapOf(2, abc, state.Entry{Holders: []string{"b", "a", "c"}, PrimaryEpoch: 1}),
		}, "primaries a and b at primary epoch 1"},
		{"an epoch going back", []*state.Map{
			mapOf(5, abc, state.Entry{Holders: []string{"a", "b", "c"}, PrimaryEpoch: 5}),
			mapOf(4, abc, state.Entry{Holders: []string{"a", "b", "c"}, PrimaryEpoch: 5}),
		}, "epoch 4 published after epoch 5"},
		{"a primary epoch going back", []*state.Map{
			mapOf(5, abc, state.Entry{Holders: []string{"a", "b", "c"}, PrimaryEpoch: 5}),
			mapOf(6, abc, state.Entry{Holders: []string{"c", "b", "a"}, PrimaryEpoch: 2}),
		}, "primary epoch went back from 5 to 2"},
		{"too few copies", []*state.Map{
			mapOf(1, abc, state.Entry{Holders: []string{"a", "b"}, PrimaryEpoch: 1}),
		}, "fewer than 3"},
		{"routed to while copying", []*state.Map{
			mapOf(1, abc, state.Entry{Holders: []string{"a", "b", "c"}, PrimaryEpoch: 1, Pending: []state.Pending{{Node: "c", Since: 1}}}),
		}, "routes to c while it still copies"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := newInvariants(3)
			var bad []string
			for _, m := range tt.maps {
				bad = append(bad, inv.next(m)...)
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
