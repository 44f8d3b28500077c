package rebalance

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// zoned builds nodes from zone sizes: zoned(1, 2) is a1 in zone a, b1 and b2 in zone b.
func zoned(sizes ...int) []Node {
	var nodes []Node
	for z, n := range sizes {
		zone := string(rune('a' + z))
		for i := range n {
			nodes = append(nodes, Node{ID: fmt.Sprintf("%s%d", zone, i+1), Zone: zone})
		}
	}
	return nodes
}

func TestZoneBalance(t *testing.T) {
	tests := []struct {
		name  string
		nodes []Node
		cfg   Config
		// want[prefix] is the inclusive range of replicas every node whose ID starts with prefix holds.
		want map[string][2]int
	}{
		{
			// Every partition needs one holder per zone, so a zone's nodes split P between them.
			name:  "as many zones as replicas",
			nodes: zoned(1, 1, 4),
			cfg:   Config{Partitions: 60, ReplicationFactor: 3},
			want:  map[string][2]int{"a": {60, 60}, "b": {60, 60}, "c": {15, 15}},
		},
		{
			// 300 slots over 10 nodes is 30 each, but zone d (4 nodes) may hold at most one replica
			// of each partition: 100. The other 200 split by weight over a, b, c: 33.3 per node.
			name:  "a zone capped at one replica per partition",
			nodes: zoned(1, 2, 3, 4),
			cfg:   Config{Partitions: 100, ReplicationFactor: 3},
			want:  map[string][2]int{"a": {33, 34}, "b": {33, 34}, "c": {33, 34}, "d": {25, 25}},
		},
		{
			// Two zones for three replicas: every partition has two holders in one zone and one in
			// the other, so each zone holds between P and 2P.
			name:  "fewer zones than replicas",
			nodes: zoned(2, 4),
			cfg:   Config{Partitions: 60, ReplicationFactor: 3},
			want:  map[string][2]int{"a": {30, 30}, "b": {30, 30}},
		},
		{
			// Zone a has one node but every partition still needs one holder there.
			name:  "fewer zones than replicas, one small zone",
			nodes: zoned(1, 5),
			cfg:   Config{Partitions: 50, ReplicationFactor: 3},
			want:  map[string][2]int{"a": {50, 50}, "b": {20, 20}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Compute(nil, tt.nodes, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkPlacement(t, m, tt.nodes, tt.cfg)
			replicas, _ := loads(m)
			for _, n := range tt.nodes {
				w := tt.want[n.ID[:1]]
				if got := replicas[n.ID]; got < w[0] || got > w[1] {
					t.Errorf("%s holds %d replicas, want %d..%d", n.ID, got, w[0], w[1])
				}
			}
		})
	}
}

func TestPropertyZoneSpread(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 200 {
		cfg := Config{Partitions: 1 + rng.IntN(200), ReplicationFactor: 1 + rng.IntN(5)}
		nodes := make([]Node, 1+rng.IntN(20))
		for k := range nodes {
			nodes[k] = Node{ID: fmt.Sprintf("n%d", k), Zone: fmt.Sprintf("z%d", rng.IntN(1+rng.IntN(6)))}
		}
		m, err := Compute(garbageMap(rng, nodes, cfg), nodes, cfg)
		if err != nil {
			t.Fatal(err)
		}
		zoneOf := map[string]string{}
		size := map[string]int{}
		for _, n := range nodes {
			zoneOf[n.ID] = n.Zone
			size[n.Zone]++
		}
		r := min(cfg.ReplicationFactor, len(nodes))
		// The smallest per-zone maximum any placement can have.
		best := 1
		for {
			fit := 0
			for _, s := range size {
				fit += min(s, best)
			}
			if fit >= r {
				break
			}
			best++
		}
		for p, holders := range m {
			count := map[string]int{}
			for _, h := range holders {
				count[zoneOf[h]]++
			}
			most := slices.Max(mapValues(count))
			switch {
			case len(size) >= r && len(count) != r:
				t.Fatalf("case %d: %d zones for R=%d, partition %d holders %v are in %d zones, want all distinct", i, len(size), r, p, holders, len(count))
			case len(count) != min(len(size), r):
				t.Fatalf("case %d: partition %d holders %v use %d of %d zones, want %d", i, p, holders, len(count), len(size), min(len(size), r))
			case most != best:
				t.Fatalf("case %d: partition %d has %d holders in one zone, want at most %d", i, p, most, best)
			}
		}
	}
}

func mapValues(m map[string]int) []int {
	var v []int
	for _, x := range m {
		v = append(v, x)
	}
	return v
}

func TestWeights(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		cfg     Config
		want    []int // replicas per node, in weight order
	}{
		{"proportional", []int{1, 2, 3, 4}, Config{Partitions: 100, ReplicationFactor: 1}, []int{10, 20, 30, 40}},
		{"zero means one", []int{0, 1, 2}, Config{Partitions: 40, ReplicationFactor: 1}, []int{10, 10, 20}},
		// Shares 3·60·w/10 are 18, 36, 54 and 72, but no node holds a partition twice: the node of
		// weight 4 is capped at 60 and the 12 left over split 1:2:3.
		{"capped at one replica per partition", []int{1, 2, 3, 4}, Config{Partitions: 60, ReplicationFactor: 3}, []int{20, 40, 60, 60}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var nodes []Node
			for i, w := range tt.weights {
				nodes = append(nodes, Node{ID: fmt.Sprintf("w%d", i), Weight: w})
			}
			m, err := Compute(nil, nodes, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkPlacement(t, m, nodes, tt.cfg)
			replicas, _ := loads(m)
			for i, n := range nodes {
				if replicas[n.ID] != tt.want[i] {
					t.Errorf("%s (weight %d) holds %d replicas, want %d", n.ID, n.Weight, replicas[n.ID], tt.want[i])
				}
			}
		})
	}
}

// SpreadLimits are the spread rule Compute follows: no partition has more holders in a zone
// than its limit, and some partition reaches it.
func TestSpreadLimits(t *testing.T) {
	tests := []struct {
		name  string
		zones []string // one per node
		r     int
		want  map[string]int
	}{
		{"no zones", []string{"", "", ""}, 2, nil},
		{"as many zones as holders", []string{"x", "y", "x", "y"}, 2, map[string]int{"x": 1, "y": 1}},
		{"fewer zones than holders", []string{"x", "y", "x", "y", "x"}, 3, map[string]int{"x": 2, "y": 2}},
		{"a small zone", []string{"x", "x", "x", "y"}, 3, map[string]int{"x": 2, "y": 1}},
		{"nodes without a zone beside zones", []string{"x", "x", "", ""}, 3, map[string]int{"x": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var nodes []Node
			for i, z := range tt.zones {
				nodes = append(nodes, Node{ID: fmt.Sprintf("n%d", i), Zone: z})
			}
			cfg := Config{Partitions: 64, ReplicationFactor: tt.r}
			limits := SpreadLimits(nodes, cfg)
			if !maps.Equal(limits, tt.want) {
				t.Fatalf("limits %v, want %v", limits, tt.want)
			}
			m, err := Compute(nil, nodes, cfg)
			if err != nil {
				t.Fatal(err)
			}
			most := map[string]int{}
			for p, holders := range m {
				count := map[string]int{}
				for _, h := range holders {
					var i int
					fmt.Sscanf(h, "n%d", &i)
					if z := tt.zones[i]; z != "" {
						count[z]++
					}
				}
				for z, k := range count {
					if k > limits[z] {
						t.Fatalf("partition %d has %d holders in zone %s, over its limit %d: %v", p, k, z, limits[z], holders)
					}
					most[z] = max(most[z], k)
				}
			}
			if !maps.Equal(most, limits) && limits != nil {
				t.Fatalf("the most holders of a partition per zone: %v; the limits %v are never reached", most, limits)
			}
		})
	}
}
