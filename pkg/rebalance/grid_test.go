package rebalance

import (
	"fmt"
	"slices"
	"testing"
)

// TestJoinPrimaryMovesGrid holds every cell of the benchmark grid to the join guarantee: exactly
// floor(P·R/(N+1)) copies, all to the new node, and at most 1.05 × floor(P/(N+1)) primary moves,
// starting from the placement Compute makes for N nodes.
func TestJoinPrimaryMovesGrid(t *testing.T) {
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
					joined := append(slices.Clone(nodes), Node{ID: "joiner"})
					next, err := Compute(prev, joined, cfg)
					if err != nil {
						t.Fatal(err)
					}
					checkPlacement(t, next, joined, cfg)
					r := min(R, N+1)
					moves := Moves(prev, next)
					if got, want := copies(moves), P*r/(N+1); got != want {
						t.Errorf("%d replicas copied, want exactly %d", got, want)
					}
					for _, mv := range moves {
						if mv.To != "joiner" {
							t.Errorf("move %+v between old nodes", mv)
							break
						}
					}
					f := P / (N + 1)
					got := len(PrimaryMoves(prev, next))
					t.Logf("primary moves %d, floor(P/(N+1)) %d", got, f)
					if float64(got) > 1.05*float64(f) {
						t.Errorf("%d primary roles moved, want at most 1.05 × %d", got, f)
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
