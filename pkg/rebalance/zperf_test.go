package rebalance

import (
	"fmt"
	"testing"
	"time"
)

func TestScratchZonePerf(t *testing.T) {
	for _, mode := range []string{"zones3", "zones5", "weights", "both"} {
		cfg := Config{Partitions: 65536, ReplicationFactor: 3}
		var nodes []Node
		for i := range 1000 {
			n := Node{ID: fmt.Sprintf("node-%d", i)}
			switch mode {
			case "zones3":
				n.Zone = fmt.Sprint("z", i%3)
			case "zones5":
				n.Zone = fmt.Sprint("z", i%5)
			case "weights":
				n.Weight = 1 + i%4
			case "both":
				n.Zone = fmt.Sprint("z", i%5)
				n.Weight = 1 + i%3
			}
			nodes = append(nodes, n)
		}
		t0 := time.Now()
		m, err := Compute(nil, nodes, cfg)
		if err != nil {
			t.Fatal(err)
		}
		init := time.Since(t0)
		j := Node{ID: "joiner", Zone: "z1", Weight: 2}
		t0 = time.Now()
		mj, _ := Compute(m, append(nodes[:1000:1000], j), cfg)
		join := time.Since(t0)
		t0 = time.Now()
		ml, _ := Compute(m, append(nodes[:500:500], nodes[501:]...), cfg)
		leave := time.Since(t0)
		t.Logf("%s: init %v join %v (%d moves, min %d) leave %v (%d moves, min %d)", mode, init, join, copies(Moves(m, mj)), minCopies(m, append(nodes[:1000:1000], j), cfg), leave, copies(Moves(m, ml)), minCopies(m, append(nodes[:500:500], nodes[501:]...), cfg))
		if errs := placementErrors(mj, append(nodes[:1000:1000], j), cfg); len(errs) > 0 {
			t.Error(errs)
		}
		if errs := placementErrors(ml, append(nodes[:500:500], nodes[501:]...), cfg); len(errs) > 0 {
			t.Error(errs)
		}
	}
}
