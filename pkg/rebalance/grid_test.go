package rebalance

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

// TestGridJoinAndLeave holds every cell of the benchmark grid (P ∈ {64, 4096, 65536},
// N ∈ {3, 10, 100, 1000}, R ∈ {1, 3}, no zones, equal weights) to what the README says of it,
// starting, as BenchmarkPlacement does, from the placement Compute makes for N nodes:
//
//   - that placement and the ones after the join and the leave keep every node at the floor or
//     the ceiling of its replica and primary shares (the max/avg columns of the README's table);
//   - a join copies exactly floor(P·R/(N+1)) replicas, all to the new node, and moves exactly
//     floor(P/(N+1)) primary roles: not one more;
//   - the leave of the middle node by ID (BenchmarkPlacement's leaver) copies exactly its
//     replicas, each to replace it, and each partition it led gets a primary that held the data.
func TestGridJoinAndLeave(t *testing.T) {
	for _, P := range []int{64, 4096, 65536} {
		for _, N := range []int{3, 10, 100, 1000} {
			for _, R := range []int{1, 3} {
				t.Run(fmt.Sprintf("P=%d/N=%d/R=%d", P, N, R), func(t *testing.T) {
					cfg := Config{Partitions: P, ReplicationFactor: R}
					nodes := benchNodes(N)
					prev, err := Compute(nil, nodes, cfg)
					if err != nil {
						t.Fatal(err)
					}
					checkPlacement(t, prev, nodes, cfg)

					joined := append(slices.Clone(nodes), Node{ID: "joiner"})
					next, err := Compute(prev, joined, cfg)
					if err != nil {
						t.Fatal(err)
					}
					checkPlacement(t, next, joined, cfg)
					moves := Moves(prev, next)
					if got, want := copies(moves), P*min(R, N+1)/(N+1); got != want {
						t.Errorf("join: %d replicas copied, want exactly %d", got, want)
					}
					for _, mv := range moves {
						if mv.To != "joiner" {
							t.Errorf("join: move %+v between old nodes", mv)
							break
						}
					}
					if got, want := len(PrimaryMoves(prev, next)), P/(N+1); got != want {
						t.Errorf("join: %d primary roles moved, want exactly floor(P/(N+1)) = %d", got, want)
					}

					sorted := slices.Clone(nodes)
					slices.SortFunc(sorted, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
					gone := sorted[N/2].ID
					left := slices.Delete(sorted, N/2, N/2+1)
					after, err := Compute(prev, left, cfg)
					if err != nil {
						t.Fatal(err)
					}
					checkPlacement(t, after, left, cfg)
					held, _ := loads(prev)
					moves = Moves(prev, after)
					if got, want := copies(moves), held[gone]-P*(min(R, N)-min(R, N-1)); got != want {
						t.Errorf("leave of %s: %d replicas copied, want exactly the %d it held", gone, got, want)
					}
					for _, mv := range moves {
						if mv.From != gone {
							t.Errorf("leave of %s: move %+v does not replace it", gone, mv)
							break
						}
					}
					for p, hs := range prev {
						if hs[0] == gone && len(after[p]) > 0 && len(hs) > 1 && !slices.Contains(hs, after[p][0]) {
							t.Errorf("leave of %s: partition %d (%v) got primary %s, which did not hold it", gone, p, hs, after[p][0])
						}
					}
				})
			}
		}
	}
}

// TestJoinPrimaryChain is a join where floor(P/(N+1)) primary moves cannot be reached: the previous
// map (from a history of joins and leaves) has P=16, R=2 and 15 nodes, and a 16th joins.
//
// Afterwards every node holds exactly 2 replicas and leads exactly 1 partition (32/16 and 16/16
// are whole). Before, n15 and n18 hold 3 replicas and n11 leads 2 partitions (7 and 9); every
// other node holds 2 and leads 1. So the 2 copies the joiner receives (the minimum) are one of
// n15's partitions {4, 5, 8} and one of n18's {6, 8, 10}, and it must lead one of them, q. The
// old primary k of q loses its role and must get one back, and the only spare role is n11's. A
// role moves only to a holder of its partition, so roles travel from n11 to k along a chain
// "u leads a partition that v holds", one primary move per step. n11 leads 7 (held by n09) and 9
// (n12); n09 leads 13 (n14) and n12 leads 12 (n16); so n16, primary of 10, is 2 steps away, and
// the primaries of 4, 5, 6 and 8 (n22, n13, n18, n15) are further. The fewest primary moves are
// therefore 1 + 2 = 3, where floor(P/(N+1)) = 1, and Compute must find them.
func TestJoinPrimaryChain(t *testing.T) {
	prev := Map{
		{"n21", "n17"}, {"n17", "n21"}, {"n14", "n19"}, {"n23", "n04"},
		{"n22", "n15"}, {"n13", "n15"}, {"n18", "n23"}, {"n11", "n09"},
		{"n15", "n18"}, {"n11", "n12"}, {"n16", "n18"}, {"n20", "n22"},
		{"n12", "n16"}, {"n09", "n14"}, {"n19", "n20"}, {"n04", "n13"},
	}
	var nodes []Node
	for _, id := range []string{"n04", "n09", "n11", "n12", "n13", "n14", "n15", "n16", "n17", "n18", "n19", "n20", "n21", "n22", "n23", "joiner"} {
		nodes = append(nodes, Node{ID: id})
	}
	cfg := Config{Partitions: 16, ReplicationFactor: 2}
	next, err := Compute(prev, nodes, cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkPlacement(t, next, nodes, cfg)
	if got := copies(Moves(prev, next)); got != 2 {
		t.Errorf("%d replicas copied, want 2", got)
	}
	if got := PrimaryMoves(prev, next); len(got) != 3 {
		t.Errorf("%d primary roles moved (%v), want the minimum 3", len(got), got)
	}
}

// TestJoinZoneCap pins the known limit the README and the package documentation state: when a
// zone already holds as many holders of every partition as the spread rule allows, primary moves
// on a join are not bounded by the joiner's share. A node of weight 2 joins zone-0 of five zones
// of two nodes each, at R=3: the zones allow one holder of a partition each, so the joiner's
// copies must come from zone-0's two nodes, some of which give partitions they lead. The copies
// stay at the minimum; the primary moves are the figures the documents quote, exactly.
func TestJoinZoneCap(t *testing.T) {
	tests := []struct {
		P, share, moves int
	}{
		{64, 10, 16},
		{4096, 682, 773},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("P=%d", tt.P), func(t *testing.T) {
			cfg := Config{Partitions: tt.P, ReplicationFactor: 3}
			nodes := variantNodes(10, 5, false)
			prev, err := Compute(nil, nodes, cfg)
			if err != nil {
				t.Fatal(err)
			}
			joiner := Node{ID: "joiner", Zone: "zone-0", Weight: 2}
			joined := append(slices.Clone(nodes), joiner)
			next, err := Compute(prev, joined, cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkPlacement(t, next, joined, cfg)
			if got, want := copies(Moves(prev, next)), minCopies(prev, joined, cfg); got != want {
				t.Errorf("%d replicas copied, want the minimum %d", got, want)
			}
			replicas, _ := loads(next)
			if got := int(math.Floor(fairPrimaries(joined, cfg, replicas)[joiner.ID] + 1e-6)); got != tt.share {
				t.Errorf("the joiner's primary share rounds down to %d, want %d", got, tt.share)
			}
			if got := len(PrimaryMoves(prev, next)); got != tt.moves {
				t.Errorf("%d primary roles moved for a share of %d, want the documented %d", got, tt.share, tt.moves)
			}
		})
	}
}
