package rebalance

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestPlanErrors(t *testing.T) {
	cfg := Config{Partitions: 8, ReplicationFactor: 2}
	nodes := nodesN(3)
	tests := []struct {
		name string
		ch   Change
		want error
	}{
		{"join a live node", Change{Join: []Node{{ID: "node-1"}}}, ErrInvalidNode},
		{"leave an unknown node", Change{Leave: []string{"node-9"}}, ErrInvalidNode},
		{"join with an empty ID", Change{Join: []Node{{ID: ""}}}, ErrInvalidNode},
		{"everyone leaves", Change{Leave: []string{"node-0", "node-1", "node-2"}}, ErrNoNodes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Plan(nil, nodes, cfg, tt.ch); !errors.Is(err, tt.want) {
				t.Errorf("Plan error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestPlanMatchesCompute(t *testing.T) {
	cfg := Config{Partitions: 128, ReplicationFactor: 3}
	nodes := nodesN(6)
	prev, err := Compute(nil, nodes, cfg)
	if err != nil {
		t.Fatal(err)
	}
	before := cloneMap(prev)
	ch := Change{Join: []Node{{ID: "new"}}, Leave: []string{"node-2"}}
	rep, err := Plan(prev, nodes, cfg, ch)
	if err != nil {
		t.Fatal(err)
	}
	if !equalMaps(prev, before) {
		t.Fatal("Plan modified prev")
	}
	after := append(slices.Delete(slices.Clone(nodes), 2, 3), Node{ID: "new"})
	want, err := Compute(prev, after, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !equalMaps(rep.Next, want) {
		t.Error("Plan's Next differs from Compute on the changed node list")
	}
	if !slices.Equal(rep.Moves, Moves(prev, want)) || !slices.Equal(rep.PrimaryMoves, PrimaryMoves(prev, want)) {
		t.Error("Plan's moves differ from Moves and PrimaryMoves")
	}
	var ids []string
	sumBefore, sumAfter := 0, 0
	for _, n := range rep.Nodes {
		ids = append(ids, n.ID)
		sumBefore += n.ReplicasBefore
		sumAfter += n.Replicas
		if n.ID == "node-2" && n.Replicas != 0 {
			t.Errorf("leaving node keeps %d replicas", n.Replicas)
		}
	}
	if want := []string{"new", "node-0", "node-1", "node-2", "node-3", "node-4", "node-5"}; !slices.Equal(ids, want) {
		t.Errorf("report nodes = %v, want %v", ids, want)
	}
	if sumBefore != 128*3 || sumAfter != 128*3 {
		t.Errorf("replicas before/after = %d/%d, want %d", sumBefore, sumAfter, 128*3)
	}
}

func TestExplain(t *testing.T) {
	cfg := Config{Partitions: 16, ReplicationFactor: 2}
	nodes := nodesN(4)
	prev, err := Compute(nil, nodes, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// node-0 crashes; explain a partition it was primary of.
	p := slices.IndexFunc(prev, func(h []string) bool { return h[0] == "node-0" })
	ex, err := Explain(prev, nodes[1:], cfg, p)
	if err != nil {
		t.Fatal(err)
	}
	next, _ := Compute(prev, nodes[1:], cfg)
	if !slices.Equal(ex.Holders, next[p]) || !slices.Equal(ex.Previous, prev[p]) {
		t.Errorf("Explain holders %v (previous %v), want %v (previous %v)", ex.Holders, ex.Previous, next[p], prev[p])
	}
	text := strings.Join(ex.Steps, "\n")
	for _, want := range []string{"node-0 is not live", "previous primary node-0 is gone", ex.Holders[0] + " is primary"} {
		if !strings.Contains(text, want) {
			t.Errorf("steps do not say %q:\n%s", want, text)
		}
	}
	if !strings.Contains(ex.Rule, "2 holders per partition") {
		t.Errorf("rule = %q", ex.Rule)
	}
	if _, err := Explain(prev, nodes, cfg, 16); !errors.Is(err, ErrInvalidPartition) {
		t.Errorf("Explain(16) error = %v, want ErrInvalidPartition", err)
	}
}
