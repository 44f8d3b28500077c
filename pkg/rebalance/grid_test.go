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
