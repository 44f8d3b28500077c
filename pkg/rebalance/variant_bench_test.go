package rebalance

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

// variantRow is one zone and weight variant's figures, for the second table of BENCHMARKS.md.
type variantRow struct {
	name                 string
	replicaDev, primDev  float64 // the largest |load - fair share| over the nodes, in partitions
	moveJoin, moveLeave  float64 // copies / minCopies on one join and one leave
	primaryJoin          float64 // primary roles moved on the join / the joiner's primary share, floored
	join, leave          time.Duration
	fasterThanRendezvous float64
}

var variantRows []variantRow

// variantNodes returns n nodes spread round-robin over the given number of zones (0: none), with
// weights 1 to 4 round-robin when weighted.
func variantNodes(n, zones int, weighted bool) []Node {
	nodes := benchNodes(n)
	for i := range nodes {
		if zones > 0 {
			nodes[i].Zone = fmt.Sprintf("zone-%d", i%zones)
		}
		if weighted {
			nodes[i].Weight = 1 + i%4
		}
	}
	return nodes
}

// variant is a zone and weight layout of BenchmarkPlacementVariants and TestPlacementVariants.
type variant struct {
	name     string
	zones    int
	weighted bool
}

var variants = []variant{
	{"zones=2", 2, false}, // fewer zones than replicas: 1 or 2 holders per zone
	{"zones=3", 3, false},
	{"zones=5", 5, false},
	{"weights", 0, true},
	{"zones=3+weights", 3, true},
	{"zones=5+weights", 5, true},
}

// cluster returns the variant's n nodes, its joiner (weight 2, in zone-0 when there are zones), the
// nodes with the joiner, and the nodes without the middle one, which is the one that leaves.
func (v variant) cluster(n int) (nodes []Node, joiner Node, joined, left []Node) {
	nodes = variantNodes(n, v.zones, v.weighted)
	joiner = Node{ID: "joiner", Weight: 2}
	if v.zones > 0 {
		joiner.Zone = "zone-0"
	}
	joined = append(slices.Clone(nodes), joiner)
	left = slices.Delete(slices.Clone(nodes), n/2, n/2+1)
	return nodes, joiner, joined, left
}

// TestPlacementVariants holds the cell of BenchmarkPlacementVariants (P=65536, N=1000, R=3 with
// zones, weights or both) to what the README and BENCHMARKS.md say of it: the fresh placement and
// the ones after the join and the leave keep every node at the floor or the ceiling of its weighted
// fair shares, and, for these layouts, the join and the leave copy exactly the lower bound
// minCopies and the join moves exactly the joiner's primary share, rounded down (the 1.00 of the
// move-join, move-leave and prim-join columns).
func TestPlacementVariants(t *testing.T) {
	const P, N, R = 65536, 1000, 3
	cfg := Config{Partitions: P, ReplicationFactor: R}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			nodes, joiner, joined, left := v.cluster(N)
			initial, err := Compute(nil, nodes, cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkPlacement(t, initial, nodes, cfg)
			join, err := Compute(initial, joined, cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkPlacement(t, join, joined, cfg)
			leave, err := Compute(initial, left, cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkPlacement(t, leave, left, cfg)
			if got, want := copies(Moves(initial, join)), minCopies(initial, joined, cfg); got != want {
				t.Errorf("join: %d replicas copied, want the minimum %d", got, want)
			}
			if got, want := copies(Moves(initial, leave)), minCopies(initial, left, cfg); got != want {
				t.Errorf("leave: %d replicas copied, want the minimum %d", got, want)
			}
			replicas, _ := loads(join)
			share := int(math.Floor(fairPrimaries(joined, cfg, replicas)[joiner.ID] + 1e-6))
			if got := len(PrimaryMoves(initial, join)); got != share {
				t.Errorf("join: %d primary roles moved, want exactly the joiner's share %d", got, share)
			}
		})
	}
}

// BenchmarkPlacementVariants runs the largest cell (P=65536, N=1000, R=3) with zones, with weights
// and with both: balance against the fair shares of the package documentation, copies on one join
// and one leave against the lower bound minCopies, and the time of each against recomputing
// rendezvous hashing (which ignores zones and weights) in the same run. The joiner has weight 2
// and joins zone-0.
func BenchmarkPlacementVariants(b *testing.B) {
	const P, N, R = 65536, 1000, 3
	cfg := Config{Partitions: P, ReplicationFactor: R}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			nodes, joiner, joined, left := v.cluster(N)
			initial, err := Compute(nil, nodes, cfg)
			if err != nil {
				b.Fatal(err)
			}
			place := func(next []Node) func() Map {
				return func() Map {
					m, err := Compute(initial, next, cfg)
					if err != nil {
						b.Fatal(err)
					}
					return m
				}
			}
			joinTime, join := timeIt(place(joined))
			leaveTime, leave := timeIt(place(left))
			cell := benchCell{P, N, R}
			hrw, ok := hrwJoin[cell]
			if !ok {
				hrw, _ = timeIt(func() Map { return rendezvousMap(joined, cfg) })
				hrwJoin[cell] = hrw
			}
			for b.Loop() {
				place(joined)()
			}
			b.StopTimer()

			row := variantRow{name: v.name, join: joinTime, leave: leaveTime}
			row.replicaDev, row.primDev = shareDeviation(initial, nodes, cfg)
			row.moveJoin = ratio(copies(Moves(initial, join)), minCopies(initial, joined, cfg))
			row.moveLeave = ratio(copies(Moves(initial, leave)), minCopies(initial, left, cfg))
			replicas, _ := loads(join)
			row.primaryJoin = ratio(len(PrimaryMoves(initial, join)),
				int(math.Floor(fairPrimaries(joined, cfg, replicas)[joiner.ID]+1e-6)))
			row.fasterThanRendezvous = float64(hrw) / float64(max(joinTime, leaveTime))
			b.ReportMetric(row.replicaDev, "replica-dev")
			b.ReportMetric(row.primDev, "primary-dev")
			b.ReportMetric(row.moveJoin, "move/bound-join")
			b.ReportMetric(row.moveLeave, "move/bound-leave")
			b.ReportMetric(row.primaryJoin, "primary-move/min-join")
			b.ReportMetric(float64(joinTime.Nanoseconds())/1e6, "join-ms")
			b.ReportMetric(float64(leaveTime.Nanoseconds())/1e6, "leave-ms")
			b.ReportMetric(row.fasterThanRendezvous, "x-faster-than-rendezvous")
			variantRows = append(variantRows, row)
		})
	}
}

// shareDeviation returns the largest distance, in partitions, between a node's replica and primary
// counts and its fair shares.
func shareDeviation(m Map, nodes []Node, cfg Config) (replicas, primaries float64) {
	rc, pc := loads(m)
	fairR := fairReplicas(nodes, cfg)
	fairP := fairPrimaries(nodes, cfg, rc)
	for _, n := range nodes {
		replicas = max(replicas, math.Abs(float64(rc[n.ID])-fairR[n.ID]))
		primaries = max(primaries, math.Abs(float64(pc[n.ID])-fairP[n.ID]))
	}
	return replicas, primaries
}
