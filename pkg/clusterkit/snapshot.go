package clusterkit

import (
	"iter"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clusterkit-go/clusterkit/internal/partition"
	"github.com/clusterkit-go/clusterkit/internal/state"
)

// snapshot is one published partition map, immutable once built. Lookups read it through an
// atomic pointer, so they take no lock and allocate nothing.
type snapshot struct {
	epoch     uint64
	leader    string
	updatedAt time.Time
	// revision is the etcd revision the map was read at.
	revision int64

	partitions []Partition
	mod        partition.Modulo
	// holders[i] is partition i's nodes, primary first; primaries[i] points into it.
	holders   [][]Node
	primaries []*Node
	nodes     map[string]*Node
	// nodeIDs is sorted.
	nodeIDs []string
	// raw is the decoded stored map, kept to diff against the next one.
	raw *state.Map
	// changed lists the partitions that differ from the snapshot of epoch since, the one this
	// snapshot was built from; nil when it was built whole (any partition may differ).
	since   uint64
	changed []int

	// enc is the /cluster body of this map with the operators' actions of the view whose tag
	// it names, built on first request and again when the view has changed (encMu held).
	encMu sync.Mutex
	enc   *encodedCluster
}

// newSnapshot builds the lookup structures of a validated map.
func newSnapshot(m *state.Map, revision int64) *snapshot {
	return nextSnapshot(nil, m, revision, nil)
}

// nextSnapshot builds the snapshot of a validated map m. With old, the snapshot of the map m was
// read against, and changed, the partitions that differ from it (follow.Update), it copies the
// fixed-size per-partition arrays of old and rebuilds only the changed partitions and those
// held by a node whose record changed; otherwise it builds every partition.
func nextSnapshot(old *snapshot, m *state.Map, revision int64, changed []int) *snapshot {
	n := len(m.Partitions)
	incremental := old != nil && changed != nil && len(old.partitions) == n
	s := &snapshot{
		epoch:     m.Epoch,
		leader:    m.Leader,
		updatedAt: m.UpdatedAt,
		revision:  revision,
		mod:       partition.NewModulo(n),
		nodes:     make(map[string]*Node, len(m.Nodes)),
		raw:       m,
	}
	var renamed []string // nodes whose record changed or went away
	for id, rec := range m.Nodes {
		if incremental {
			if prev, ok := old.raw.Nodes[id]; ok && prev.Equal(rec) {
				s.nodes[id] = old.nodes[id]
				s.nodeIDs = append(s.nodeIDs, id)
				continue
			}
		}
		n := nodeFromRecord(rec)
		s.nodes[id] = &n
		s.nodeIDs = append(s.nodeIDs, id)
	}
	slices.Sort(s.nodeIDs)
	ids := partitionIDs(n)
	if !incremental {
		s.partitions = make([]Partition, n)
		s.holders = make([][]Node, n)
		s.primaries = make([]*Node, n)
		// One backing array for every holder slice keeps the map compact.
		total := 0
		for i := range m.Partitions {
			total += len(m.Partitions[i].Holders)
		}
		backing := make([]Node, 0, total)
		for i := range m.Partitions {
			backing = s.build(i, ids[i], backing)
		}
		return s
	}
	for id, rec := range old.raw.Nodes {
		if now, ok := m.Nodes[id]; !ok || !now.Equal(rec) {
			renamed = append(renamed, id)
		}
	}
	if len(renamed) > 0 {
		for i := range old.raw.Partitions {
			if slices.ContainsFunc(old.raw.Partitions[i].Holders, func(h string) bool { return slices.Contains(renamed, h) }) {
				changed = append(changed, i)
			}
		}
		changed = slices.Compact(slices.Sorted(slices.Values(changed)))
	}
	s.since, s.changed = old.epoch, changed
	s.partitions = slices.Clone(old.partitions)
	s.holders = slices.Clone(old.holders)
	s.primaries = slices.Clone(old.primaries)
	for i := range s.partitions {
		s.partitions[i].Epoch = m.Epoch
	}
	for _, i := range changed {
		s.build(i, ids[i], nil)
	}
	return s
}

// build sets partition i from the map's entry, appending its holders to backing (or to a slice
// of their own when backing is nil), and returns backing.
func (s *snapshot) build(i int, id string, backing []Node) []Node {
	e := &s.raw.Partitions[i]
	if backing == nil {
		backing = make([]Node, 0, len(e.Holders))
	}
	start := len(backing)
	for _, h := range e.Holders {
		backing = append(backing, *s.nodes[h])
	}
	hs := backing[start:len(backing):len(backing)]
	s.holders[i] = hs
	s.primaries[i] = &hs[0]
	p := Partition{
		ID:           id,
		PrimaryNode:  e.Holders[0],
		ReplicaNodes: e.Holders[1:len(e.Holders):len(e.Holders)],
		PrimaryEpoch: e.PrimaryEpoch,
		Epoch:        s.epoch,
		index:        i,
	}
	for _, pd := range e.Pending {
		p.PendingNodes = append(p.PendingNodes, pd.Node)
	}
	s.partitions[i] = p
	return backing
}

// diffCount is how many partitions diffed yields.
func (s *snapshot) diffCount(old *snapshot) int {
	if old != nil && s.changed != nil && s.since == old.epoch {
		return len(s.changed)
	}
	return len(s.raw.Partitions)
}

// diffed returns the partitions that may differ between old and s: s.changed when s was built
// from old, every partition otherwise.
func (s *snapshot) diffed(old *snapshot) iter.Seq[int] {
	if old != nil && s.changed != nil && s.since == old.epoch {
		return slices.Values(s.changed)
	}
	return func(yield func(int) bool) {
		for i := range s.raw.Partitions {
			if !yield(i) {
				return
			}
		}
	}
}

// idCache holds "partition-<i>" for every index up to the largest partition count seen, so that
// a new snapshot shares the IDs instead of formatting them again (the count is fixed per cluster).
var idCache atomic.Pointer[[]string]

// partitionIDs returns the IDs of partitions 0 to n-1. The slice is shared: never modify it.
func partitionIDs(n int) []string {
	if p := idCache.Load(); p != nil && len(*p) >= n {
		return (*p)[:n]
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = PartitionID(i)
	}
	idCache.Store(&ids)
	return ids
}

// lookup returns the index of p in s: the index recorded in p when p came from ClusterKit,
// otherwise the one parsed from p.ID. It returns -1 for a partition s does not have.
func (s *snapshot) lookup(p *Partition) int {
	if p == nil {
		return -1
	}
	if i := p.index; i >= 0 && i < len(s.partitions) && s.partitions[i].ID == p.ID {
		return i
	}
	i, err := parsePartitionID(p.ID, len(s.partitions))
	if err != nil {
		return -1
	}
	return i
}

// involves reports whether node holds or is copying any partition in s.
func (s *snapshot) involves(node string) bool {
	for i := range s.raw.Partitions {
		if roleIn(&s.raw.Partitions[i], node) != RoleNone {
			return true
		}
	}
	return false
}
