package clustertest

import (
	"fmt"
	"slices"
	"sync"

	"github.com/clusterkit-go/clusterkit/internal/state"
)

// invariants holds what the checker remembers of the maps seen so far, and checks each new one.
// It is a pure function of the maps fed to it: next does no I/O.
type invariants struct {
	replication int
	epoch       uint64
	// primaries maps partition and primary epoch to the node that was primary at that epoch.
	primaries map[primaryKey]string
	// primaryEpoch is each partition's last primary epoch.
	primaryEpoch map[int]uint64
	maps         int
}

type primaryKey struct {
	partition int
	epoch     uint64
}

func newInvariants(replication int) *invariants {
	return &invariants{replication: replication, primaries: map[primaryKey]string{}, primaryEpoch: map[int]uint64{}}
}

// next checks m against the maps before it and returns the broken invariants, one line each.
func (v *invariants) next(m *state.Map) []string {
	var bad []string
	v.maps++
	if m.Epoch <= v.epoch {
		bad = append(bad, fmt.Sprintf("epoch %d published after epoch %d", m.Epoch, v.epoch))
	}
	v.epoch = max(v.epoch, m.Epoch)
	want := min(len(m.Nodes), v.replication)
	for i := range m.Partitions {
		e := &m.Partitions[i]
		if len(e.Holders) == 0 {
			bad = append(bad, fmt.Sprintf("epoch %d: partition-%d has no holder", m.Epoch, i))
			continue
		}
		k := primaryKey{i, e.PrimaryEpoch}
		if was, ok := v.primaries[k]; ok && was != e.Holders[0] {
			bad = append(bad, fmt.Sprintf("epoch %d: partition-%d has primaries %s and %s at primary epoch %d",
				m.Epoch, i, was, e.Holders[0], e.PrimaryEpoch))
		}
		v.primaries[k] = e.Holders[0]
		if last := v.primaryEpoch[i]; e.PrimaryEpoch < last {
			bad = append(bad, fmt.Sprintf("epoch %d: partition-%d primary epoch went back from %d to %d", m.Epoch, i, last, e.PrimaryEpoch))
		}
		v.primaryEpoch[i] = max(v.primaryEpoch[i], e.PrimaryEpoch)
		if e.PrimaryEpoch > m.Epoch {
			bad = append(bad, fmt.Sprintf("epoch %d: partition-%d has primary epoch %d, from the future", m.Epoch, i, e.PrimaryEpoch))
		}
		held := slices.Clone(e.Holders)
		for _, pd := range e.Pending {
			if slices.Contains(e.Holders, pd.Node) {
				bad = append(bad, fmt.Sprintf("epoch %d: partition-%d routes to %s while it still copies", m.Epoch, i, pd.Node))
			}
			held = append(held, pd.Node)
		}
		slices.Sort(held)
		held = slices.Compact(held)
		// A crashed node keeps its places during the grace period (Absent): its partitions
		// then have fewer copies on purpose.
		if len(held) < want && len(m.Absent) == 0 {
			bad = append(bad, fmt.Sprintf("epoch %d: partition-%d has holders %v and copies %v, fewer than %d",
				m.Epoch, i, e.Holders, e.Pending, want))
		}
	}
	return bad
}

// checker collects the violations of the maps it is fed.
type checker struct {
	mu         sync.Mutex
	inv        *invariants
	violations []string
}

func (c *checker) feed(m *state.Map) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.violations = append(c.violations, c.inv.next(m)...)
}

func (c *checker) result() ([]string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.violations), c.inv.maps
}
