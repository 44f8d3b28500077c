package rebalance

import (
	"math"
	"slices"
	"testing"
)

// exactMinCopies returns the fewest copies that any placement of nodes needs after prev under the
// guarantees of the package documentation as the property tests check them: min(N, R) distinct
// live holders per partition, the zone spread bounds, and each node's replica count within one of
// its fair share (its floor or its ceiling). Compute also keeps each zone's total within one of
// the zone's share, which can cost a few more copies, so this is a lower bound for Compute and the
// exact minimum for the rules every placement must meet. It shares no code with the placer, and it
// returns the placement that reaches the minimum (holders unordered) for the caller to check.
//
// The rules make placement a flow: a partition sends r units to its zone slots (between lo and hi
// per zone), a zone slot one unit to each node of the zone (cost 1 if the node did not hold the
// partition in prev: a copy), a node its load to the sink, within its bounds. next, a placement
// that meets the rules, is a feasible flow, and a flow has the least cost exactly when its
// residual graph has no cycle of negative cost; so this cancels negative cycles, found by
// Bellman-Ford, until there is none.
func exactMinCopies(prev, next Map, nodes []Node, cfg Config) (int, Map) {
	const eps = 1e-6
	if len(prev) != cfg.Partitions {
		prev = nil
	}
	P, N := cfg.Partitions, len(nodes)
	lo, hi := spreadBounds(nodes, min(cfg.ReplicationFactor, N))
	zones := zoneOf(nodes)
	zoneIndex := map[string]int{}
	var zlo, zhi []int
	nodeZone := make([]int, N)
	index := map[string]int{}
	for i, n := range nodes {
		z, ok := zoneIndex[zones[n.ID]]
		if !ok {
			z = len(zoneIndex)
			zoneIndex[zones[n.ID]] = z
			zlo, zhi = append(zlo, lo[zones[n.ID]]), append(zhi, hi[zones[n.ID]])
		}
		nodeZone[i], index[n.ID] = z, i
	}
	Z := len(zoneIndex)
	fair := fairReplicas(nodes, cfg)
	nfloor, nceil := make([]int, N), make([]int, N)
	for i, n := range nodes {
		nfloor[i], nceil[i] = int(math.Floor(fair[n.ID]+eps)), int(math.Ceil(fair[n.ID]-eps))
	}
	// x[p*N+n] is the flow: whether n holds p. Every other flow is a sum of it.
	x, held := make([]bool, P*N), make([]bool, P*N)
	for p := range P {
		for _, id := range next[p] {
			x[p*N+index[id]] = true
		}
		if prev != nil {
			for _, id := range prev[p] {
				if n, ok := index[id]; ok {
					held[p*N+n] = true
				}
			}
		}
	}
	// Vertices: the sink, the nodes, the partitions, then the zone slots of each partition.
	const sink = 0
	nv := func(n int) int { return 1 + n }
	pv := func(p int) int { return 1 + N + p }
	sv := func(p, z int) int { return 1 + N + P + p*Z + z }
	V := 1 + N + P + P*Z
	type edge struct {
		from, to, cost int
		flip           int // the x entry that pushing one unit along the edge flips, -1 for none
	}
	residual := func() []edge {
		var es []edge
		load := make([]int, N)
		count := make([]int, Z)
		for p := range P {
			clear(count)
			for n := range N {
				k := p*N + n
				cost := 1
				if held[k] {
					cost = 0
				}
				if x[k] {
					count[nodeZone[n]]++
					load[n]++
					es = append(es, edge{nv(n), sv(p, nodeZone[n]), -cost, k})
				} else {
					es = append(es, edge{sv(p, nodeZone[n]), nv(n), cost, k})
				}
			}
			for z := range Z {
				if count[z] < zhi[z] {
					es = append(es, edge{pv(p), sv(p, z), 0, -1})
				}
				if count[z] > zlo[z] {
					es = append(es, edge{sv(p, z), pv(p), 0, -1})
				}
			}
		}
		for n := range N {
			if load[n] < nceil[n] {
				es = append(es, edge{nv(n), sink, 0, -1})
			}
			if load[n] > nfloor[n] {
				es = append(es, edge{sink, nv(n), 0, -1})
			}
		}
		return es
	}
	dist, parent, seen := make([]int, V), make([]int, V), make([]int, V)
	walk := 0
	// cycleFrom returns a vertex on a cycle of parent edges reached from v, or -1. Any such cycle
	// has negative cost, so it can be cancelled before Bellman-Ford's V rounds are over.
	cycleFrom := func(es []edge, v int) int {
		walk++
		for ; v >= 0 && parent[v] >= 0; v = es[parent[v]].from {
			if seen[v] == walk {
				return v
			}
			seen[v] = walk
		}
		return -1
	}
	for {
		es := residual()
		for v := range dist {
			dist[v], parent[v] = 0, -1
		}
		onCycle := -1
		for range V {
			last := -1
			for i, e := range es {
				if dist[e.from]+e.cost < dist[e.to] {
					dist[e.to], parent[e.to], last = dist[e.from]+e.cost, i, e.to
				}
			}
			if last < 0 {
				break
			}
			if onCycle = cycleFrom(es, last); onCycle >= 0 {
				break
			}
		}
		if onCycle < 0 {
			break // no negative cycle: the flow has the least cost
		}
		for u := onCycle; ; {
			e := es[parent[u]]
			if e.flip >= 0 {
				x[e.flip] = !x[e.flip]
			}
			if u = e.from; u == onCycle {
				break
			}
		}
	}
	cost := 0
	best := make(Map, P)
	for p := range P {
		for n := range N {
			if k := p*N + n; x[k] {
				best[p] = append(best[p], nodes[n].ID)
				if !held[k] {
					cost++
				}
			}
		}
	}
	return cost, best
}

// TestExactMinCopies checks the solver the event-sequence test relies on: started from a wasteful
// placement (computed from scratch, ignoring prev), it must come down to the known minimum of a
// join, floor(P·R/(N+1)) copies, and return a placement that meets the rules with that many.
func TestExactMinCopies(t *testing.T) {
	tests := []struct {
		name  string
		nodes []Node
		cfg   Config
	}{
		{"equal weights", nodesN(5), Config{Partitions: 40, ReplicationFactor: 3}},
		{"zones", zoned(2, 2, 1), Config{Partitions: 30, ReplicationFactor: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev, err := Compute(nil, tt.nodes, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			joined := append(slices.Clone(tt.nodes), Node{ID: "joiner", Zone: tt.nodes[0].Zone})
			wasteful, err := Compute(nil, joined, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			want := minCopies(prev, joined, tt.cfg)
			if copies(Moves(prev, wasteful)) <= want {
				t.Fatalf("the placement from scratch copies %d, not more than the minimum %d: nothing to test", copies(Moves(prev, wasteful)), want)
			}
			got, best := exactMinCopies(prev, wasteful, joined, tt.cfg)
			if got != want {
				t.Errorf("exactMinCopies = %d, want %d", got, want)
			}
			if errs := holderErrors(best, joined, tt.cfg); len(errs) > 0 {
				t.Errorf("its placement breaks the rules: %v", errs)
			}
			if n := copies(Moves(prev, best)); n != got {
				t.Errorf("its placement copies %d, not %d", n, got)
			}
		})
	}
}
