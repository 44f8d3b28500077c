package rebalance

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

func nodesN(n int) []Node {
	ns := make([]Node, n)
	for i := range ns {
		ns[i] = Node{ID: fmt.Sprintf("node-%d", i)}
	}
	return ns
}

func TestComputeErrors(t *testing.T) {
	good := Config{Partitions: 8, ReplicationFactor: 2}
	tests := []struct {
		name  string
		nodes []Node
		cfg   Config
		want  error
	}{
		{"no nodes", nil, good, ErrNoNodes},
		{"zero partitions", nodesN(2), Config{Partitions: 0, ReplicationFactor: 1}, ErrInvalidConfig},
		{"zero replication", nodesN(2), Config{Partitions: 4, ReplicationFactor: 0}, ErrInvalidConfig},
		{"too many slots", nodesN(2), Config{Partitions: 1 << 30, ReplicationFactor: 3}, ErrInvalidConfig},
		{"empty id", []Node{{ID: "a"}, {ID: ""}}, good, ErrInvalidNode},
		{"duplicate id", []Node{{ID: "a"}, {ID: "b"}, {ID: "a"}}, good, ErrInvalidNode},
		{"negative weight", []Node{{ID: "a", Weight: -1}}, good, ErrInvalidNode},
		{"weight too large", []Node{{ID: "a", Weight: MaxWeight + 1}}, good, ErrInvalidNode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Compute(nil, tt.nodes, tt.cfg)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Compute error = %v, want %v", err, tt.want)
			}
			if m != nil {
				t.Errorf("Compute returned a map with an error: %v", m)
			}
		})
	}
}

func TestComputeSmall(t *testing.T) {
	tests := []struct {
		name  string
		prev  Map
		nodes []Node
		cfg   Config
		want  Map   // nil: any valid placement
		same  []int // partitions that must not change
	}{
		{
			name:  "one node holds everything",
			nodes: []Node{{ID: "a"}},
			cfg:   Config{Partitions: 3, ReplicationFactor: 3},
			want:  Map{{"a"}, {"a"}, {"a"}},
		},
		{
			name:  "fewer nodes than replicas",
			prev:  Map{{"a"}, {"a"}},
			nodes: []Node{{ID: "a"}, {ID: "b"}},
			cfg:   Config{Partitions: 2, ReplicationFactor: 3},
		},
		{
			name:  "balanced previous map is kept",
			prev:  Map{{"a", "b"}, {"b", "c"}, {"c", "a"}},
			nodes: []Node{{ID: "c"}, {ID: "a"}, {ID: "b"}},
			cfg:   Config{Partitions: 3, ReplicationFactor: 2},
			want:  Map{{"a", "b"}, {"b", "c"}, {"c", "a"}},
		},
		{
			name:  "dead primary: a surviving replica takes over",
			prev:  Map{{"a", "b"}, {"b", "c"}, {"c", "a"}},
			nodes: []Node{{ID: "b"}, {ID: "c"}},
			cfg:   Config{Partitions: 3, ReplicationFactor: 2},
			same:  []int{1},
		},
		{
			name:  "previous map of another size is ignored",
			prev:  Map{{"x"}},
			nodes: []Node{{ID: "a"}},
			cfg:   Config{Partitions: 2, ReplicationFactor: 1},
			want:  Map{{"a"}, {"a"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Compute(tt.prev, tt.nodes, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkPlacement(t, got, tt.nodes, tt.cfg)
			if tt.want != nil && !slices.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("Compute = %v, want %v", got, tt.want)
			}
			for _, p := range tt.same {
				if !slices.Equal(got[p], tt.prev[p]) {
					t.Errorf("partition %d = %v, want it unchanged %v", p, got[p], tt.prev[p])
				}
			}
		})
	}
}

func TestMoves(t *testing.T) {
	tests := []struct {
		name       string
		prev, next Map
		want       []Move
	}{
		{"no change", Map{{"a", "b"}}, Map{{"a", "b"}}, nil},
		{"primary swap is not a move", Map{{"a", "b"}}, Map{{"b", "a"}}, nil},
		{"replacement", Map{{"a", "b"}, {"b", "c"}}, Map{{"a", "d"}, {"b", "c"}}, []Move{{0, "b", "d"}}},
		{"from scratch", nil, Map{{"b", "a"}}, []Move{{0, "", "a"}, {0, "", "b"}}},
		{"dropped slot", Map{{"a", "b", "c"}}, Map{{"a", "b"}}, []Move{{0, "c", ""}}},
		{"sorted by To", Map{{"a", "b", "c"}}, Map{{"a", "z", "y"}}, []Move{{0, "b", "y"}, {0, "c", "z"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Moves(tt.prev, tt.next); !slices.Equal(got, tt.want) {
				t.Errorf("Moves = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPrimaryMoves(t *testing.T) {
	prev := Map{{"a", "b"}, {"b", "c"}, {"c", "a"}}
	next := Map{{"b", "a"}, {"b", "c"}, {"d", "a"}}
	want := []Move{{0, "a", "b"}, {2, "c", "d"}}
	if got := PrimaryMoves(prev, next); !slices.Equal(got, want) {
		t.Errorf("PrimaryMoves = %v, want %v", got, want)
	}
}

// Many nodes joining at once are placed by direct hand-overs, not by repair's chain searches (one
// search per replica, each reading much of the map, took minutes at 65536 partitions), and with
// exactly the copies the new nodes' shares need.
func TestBulkJoinsNeedNoChainSearches(t *testing.T) {
	const parts = 4096
	cfg := Config{Partitions: parts, ReplicationFactor: 3}
	for _, tc := range []struct{ from, to int }{{1, 10}, {2, 10}, {3, 6}, {3, 10}, {10, 15}} {
		prev, err := Compute(nil, nodesN(tc.from), cfg)
		if err != nil {
			t.Fatal(err)
		}
		pl, err := newPlacer(prev, nodesN(tc.to), cfg)
		if err != nil {
			t.Fatal(err)
		}
		pl.run()
		next := pl.result()
		if pl.augments > bulkExcess*tc.from {
			t.Errorf("%d -> %d nodes: %d chain searches", tc.from, tc.to, pl.augments)
		}
		// Every replica a new node holds is one copy, and nothing else moves.
		copies := 0
		for _, m := range Moves(prev, next) {
			if m.To != "" {
				copies++
			}
		}
		want := 0
		for n := tc.from; n < tc.to; n++ {
			i, ok := pl.index.lookup(fmt.Sprintf("node-%d", n))
			if !ok {
				t.Fatalf("node-%d not placed", n)
			}
			want += pl.quota[i]
		}
		if copies != want {
			t.Errorf("%d -> %d nodes: %d copies, the new nodes' shares are %d", tc.from, tc.to, copies, want)
		}
	}
}
