package rebalance

import (
	"fmt"
	"testing"
)

func BenchmarkScratchZ3Init(b *testing.B) {
	cfg := Config{Partitions: 65536, ReplicationFactor: 3}
	var nodes []Node
	for i := range 1000 {
		nodes = append(nodes, Node{ID: fmt.Sprintf("node-%d", i), Zone: fmt.Sprint("z", i%3)})
	}
	for b.Loop() {
		Compute(nil, nodes, cfg)
	}
}
