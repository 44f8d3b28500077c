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
	// prev is the last map seen.
	prev *state.Map
	maps int
}

// acked reports whether node acknowledged its copy of partition p requested at epoch since, as
// etcd held it when the map being checked was written.
type acked func(p int, node string, since uint64) bool

type primaryKey struct {
	partition int
	epoch     uint64
}

func newInvariants(replication int) *invariants {
	return &invariants{replication: replication, primaries: map[primaryKey]string{}, primaryEpoch: map[int]uint64{}}
}

// next checks m against the maps before it and returns the broken invariants, one line each.
func (v *invariants) next(m *state.Map, ack acked) []string {
	var bad []string
	v.maps++
	prev := v.prev
	if prev != nil && len(prev.Partitions) != len(m.Partitions) {
		prev = nil
	}
	v.prev = m
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
		// Copies queued by MaxHandoffsPerNode or MaxHandoffs are in the target without a
		// request yet: the partition is short of them on purpose until a slot frees.
		for _, n := range e.Target {
			if _, live := m.Nodes[n]; live {
				held = append(held, n)
			}
		}
		if prev != nil {
			bad = append(bad, routedEarly(prev, m, i, ack)...)
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

// routedEarly lists the nodes that m routes to for partition i without a completed copy: a
// node becomes a holder only once it has acknowledged the copy the previous map asked of it,
// unless none of the previous holders is left to copy from, or it runs no copy hook (its record
// says no_handoff: it has nothing to copy).
func routedEarly(prev, m *state.Map, i int, ack acked) []string {
	var bad []string
	before, e := &prev.Partitions[i], &m.Partitions[i]
	survivor := slices.ContainsFunc(before.Holders, func(h string) bool { _, ok := m.Nodes[h]; return ok })
	for _, h := range e.Holders {
		if slices.Contains(before.Holders, h) || !survivor || m.Nodes[h].NoHandoff {
			continue
		}
		pd, asked := before.PendingFor(h)
		switch {
		case !asked:
			bad = append(bad, fmt.Sprintf("epoch %d: partition-%d routes to %s, which was never asked to copy it (holders before: %v)",
				m.Epoch, i, h, before.Holders))
		case ack != nil && !ack(i, h, pd.Since):
			bad = append(bad, fmt.Sprintf("epoch %d: partition-%d routes to %s before it acknowledged its copy (asked at epoch %d)",
				m.Epoch, i, h, pd.Since))
		}
	}
	return bad
}

// checker collects the violations of the maps it is fed.
type checker struct {
	mu         sync.Mutex
	inv        *invariants
	violations []string
	// injected are the revision ranges of faults a test wrote (Cluster.Inject); an open range
	// has to == 0.
	injected []revRange
}

type revRange struct{ from, to int64 }

// feed checks m, the map written at revision rev, unless a test wrote it.
func (c *checker) feed(m *state.Map, rev int64, ack acked) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.injected {
		if rev > r.from && (r.to == 0 || rev <= r.to) {
			return
		}
	}
	c.violations = append(c.violations, c.inv.next(m, ack)...)
}

// inject opens a range of injected revisions after from, and returns the function that closes
// it at to.
func (c *checker) inject(from int64) func(to int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := len(c.injected)
	c.injected = append(c.injected, revRange{from: from})
	return func(to int64) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.injected[i].to = to
	}
}

func (c *checker) result() ([]string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.violations), c.inv.maps
}
