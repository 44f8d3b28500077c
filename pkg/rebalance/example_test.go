package rebalance_test

import (
	"fmt"
	"slices"

	"github.com/clusterkit-go/clusterkit/pkg/rebalance"
)

func ExampleCompute() {
	cfg := rebalance.Config{Partitions: 6, ReplicationFactor: 2}
	nodes := []rebalance.Node{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	m, err := rebalance.Compute(nil, nodes, cfg)
	if err != nil {
		panic(err)
	}
	// Node d joins: it takes its fair share (6·2/4 = 3 replicas) from the others, and nothing else
	// moves.
	next, err := rebalance.Compute(m, append(nodes, rebalance.Node{ID: "d"}), cfg)
	if err != nil {
		panic(err)
	}
	for _, mv := range rebalance.Moves(m, next) {
		fmt.Printf("partition-%d: %s -> %s\n", mv.Partition, mv.From, mv.To)
	}
	fmt.Println(len(rebalance.PrimaryMoves(m, next)), "primary roles moved")
	// Output:
	// partition-0: b -> d
	// partition-1: a -> d
	// partition-4: c -> d
	// 1 primary roles moved
}

func ExamplePlan() {
	cfg := rebalance.Config{Partitions: 64, ReplicationFactor: 3}
	nodes := []rebalance.Node{{ID: "node-1", Zone: "a"}, {ID: "node-2", Zone: "b"}, {ID: "node-3", Zone: "c"}, {ID: "node-4", Zone: "a"}}
	m, err := rebalance.Compute(nil, nodes, cfg)
	if err != nil {
		panic(err)
	}
	// What if node-5 joined zone b?
	rep, err := rebalance.Plan(m, nodes, cfg, rebalance.Change{Join: []rebalance.Node{{ID: "node-5", Zone: "b"}}})
	if err != nil {
		panic(err)
	}
	fmt.Println(len(rep.Moves), "replicas would move")
	for _, n := range rep.Nodes {
		fmt.Printf("%s (zone %s): %d -> %d replicas, %d -> %d primaries\n",
			n.ID, n.Zone, n.ReplicasBefore, n.Replicas, n.PrimariesBefore, n.Primaries)
	}
	// Output:
	// 32 replicas would move
	// node-1 (zone a): 32 -> 32 replicas, 16 -> 13 primaries
	// node-2 (zone b): 64 -> 32 replicas, 16 -> 13 primaries
	// node-3 (zone c): 64 -> 64 replicas, 16 -> 13 primaries
	// node-4 (zone a): 32 -> 32 replicas, 16 -> 13 primaries
	// node-5 (zone b): 0 -> 32 replicas, 0 -> 12 primaries
}

func ExampleExplain() {
	cfg := rebalance.Config{Partitions: 8, ReplicationFactor: 2}
	nodes := []rebalance.Node{{ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "d"}}
	m, err := rebalance.Compute(nil, nodes, cfg)
	if err != nil {
		panic(err)
	}
	// Node a crashes: why does the first partition it led end up where it does?
	p := slices.IndexFunc(m, func(holders []string) bool { return holders[0] == "a" })
	ex, err := rebalance.Explain(m, nodes[1:], cfg, p)
	if err != nil {
		panic(err)
	}
	fmt.Println(ex.Previous, "->", ex.Holders)
	for _, step := range ex.Steps {
		fmt.Println(step)
	}
	// Output:
	// [a c] -> [c b]
	// a is not live: its slot is free
	// c keeps its replica
	// previous primary a is gone: a surviving holder will take the primary role
	// b fills a free slot: it had 4 replicas, target 6
	// c becomes primary: it had 2 primaries, target 3
	// c is primary; it holds 5 replicas (target 5) and is primary of 3 (target 3)
	// b is replica; it holds 6 replicas (target 6) and is primary of 2 (target 2)
}
